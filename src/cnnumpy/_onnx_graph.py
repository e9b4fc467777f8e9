"""ONNX nodes of graph models (:class:`cnnumpy.Model`), for :mod:`cnnumpy.onnx` (which owns
the graph under construction, ``g``; see its ``_Graph``).

The nodes are converted in topological order. Each symbolic tensor of the model becomes one
ONNX tensor with its own rank and layout (images NHWC as in cnnumpy, or NCHW after a
convolution or pooling); a single-input layer goes through the converter a ``Sequential``
uses, starting from its input's tensor. A merge brings its image inputs to one layout first
(NCHW when any of them is NCHW; the transposes are shared by every consumer of a tensor):

=====================  ====================================================================
cnnumpy layer          ONNX operators
=====================  ====================================================================
Add                    Add (two inputs), Sum (more)
Subtract               Sub
Multiply               Mul, one per extra input
Average                Mean
Concatenate            Concat (the axis moved to where it stands in NCHW for NCHW images)
=====================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from cnnumpy.graph import InputLayer
from cnnumpy.layers.merge import Add, Average, Concatenate, Merge, Multiply, Subtract

_NCHW_FROM_NHWC = [0, 3, 1, 2]  # NCHW axis i holds NHWC axis _NCHW_FROM_NHWC[i]


def _chain(g: Any, op_type: str, names: list[str], base: str) -> str:
    out = names[0]
    for name in names[1:]:
        out = g.op(op_type, [out, name], base)
    return out


def merge(g: Any, layer: Merge, states: list[tuple[str, int, str]]) -> None:
    """The nodes of one merge of the tensors ``states`` (name, rank, layout); the result
    becomes the current tensor of ``g``."""
    rank = states[0][1]
    layout = "NCHW" if rank == 4 and any(s[2] == "NCHW" for s in states) else "NHWC"
    names = []
    for state in states:
        g.x, g.rank, g.layout = state
        g.to_layout(layout, layer.name)
        names.append(g.x)
    g.rank, g.layout, base, kind = rank, layout, layer.name, type(layer)
    if kind is Add:
        g.x = g.op("Add" if len(names) == 2 else "Sum", names, base)
    elif kind is Subtract:
        g.x = g.op("Sub", names, base)
    elif kind is Multiply:
        g.x = _chain(g, "Mul", names, base)
    elif kind is Average:
        g.x = g.op("Mean", names, base)
    else:  # Concatenate (the classes in MERGES)
        axis = cast(Concatenate, layer)._sample_axis(rank - 1) + 1
        if rank == 4 and layout == "NCHW":
            axis = _NCHW_FROM_NHWC.index(axis)
        g.x = g.op("Concat", names, base, axis=axis)


MERGES = (Add, Subtract, Multiply, Average, Concatenate)
"""The merge layer classes that export."""


def add_graph(g: Any, model: Any, convert: Callable[[Any, Any, tuple[int, ...]], None]) -> None:
    """Add the nodes of graph ``model`` to ``g``, whose current tensor is the model's input;
    ``convert(g, layer, input_shape)`` adds a single-input layer's nodes (its activation
    included). At the end the current tensor is the model's output."""
    tensors = {id(model.input): (g.x, g.rank, g.layout)}
    for node in model._nodes:
        if isinstance(node.layer, InputLayer):
            continue
        states = [tensors[id(t)] for t in node.inputs]
        if isinstance(node.layer, Merge):
            merge(g, node.layer, states)
        else:
            g.x, g.rank, g.layout = states[0]
            convert(g, node.layer, node.inputs[0].shape)
        tensors[id(node.output)] = (g.x, g.rank, g.layout)
    g.x, g.rank, g.layout = tensors[id(model.output)]


def unsupported(model: Any, converters: dict[type, Any], graph: bool) -> list[str]:
    """The labels of the layers of ``model`` (a graph when ``graph``, else a Sequential) that
    cannot export."""
    known = (*converters, *MERGES, InputLayer) if graph else tuple(converters)
    return [layer.label for layer in model.layers if type(layer) not in known]
