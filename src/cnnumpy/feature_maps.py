"""Every layer's output for one image: what ``cnnumpy visualize`` draws and ``cnnumpy serve``
shows, computed once here for both.

A ``Sequential`` is taken as its list of layers, each fed the previous one's output. A graph
``Model`` runs its own forward once, node by node (:func:`cnnumpy.graph_run.node_outputs`),
and gives one entry per node in node order: the input first, a merge layer with the list of
its inputs, a shared layer once per call.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class LayerOutput(NamedTuple):
    """One layer's place (one call's, in a graph) in a forward pass of one image.

    Shape:
        ``input`` and ``output``: the layer's per-sample shapes (no batch axis); ``input`` is
        a list of arrays for a merge layer.
    """

    index: int  # type: ignore[assignment]  # a public field's name, shadowing tuple.index
    layer: Any
    input: Any
    output: np.ndarray
    node: Any = None
    """The graph node (None in a ``Sequential``): its ``inputs`` say where ``input`` came
    from."""
    call: int = 0
    """Which call of the layer this is (a shared layer's second call is 1)."""

    @property
    def name(self) -> str:
        """:func:`call_name` of this entry."""
        return call_name(self.layer, self.call)


def call_name(layer: Any, call: int = 0) -> str:
    """A layer's name, with ``[call]`` after it for a shared layer's later calls."""
    return layer.name if call == 0 else f"{layer.name}[{call}]"


def is_convolution(layer: Any) -> bool:
    """A layer that slides kernels over an image: ``Conv2D``, ``DepthwiseConv2D``,
    ``SeparableConv2D`` or ``Conv2DTranspose``."""
    from cnnumpy.layers import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D

    return isinstance(layer, (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose))


def kernel_tiles(layer: Any) -> np.ndarray:
    """A convolution's kernels as pictures, one per output channel (averaged over the input
    channels it reads), or one per depthwise kernel for ``DepthwiseConv2D`` and
    ``SeparableConv2D``.

    Shape:
        ``(kh, kw, n)``.
    """
    from cnnumpy.layers import Conv2DTranspose, DepthwiseConv2D, SeparableConv2D

    if isinstance(layer, SeparableConv2D):
        kernel = np.asarray(layer.params["depthwise_kernel"], dtype=np.float64)
    else:
        kernel = np.asarray(layer.params["kernel"], dtype=np.float64)
    if isinstance(layer, (DepthwiseConv2D, SeparableConv2D)):  # output c * M + m
        return kernel.reshape(*kernel.shape[:2], -1)
    return kernel.mean(axis=3 if isinstance(layer, Conv2DTranspose) else 2)


def layer_outputs(model: Any, image: np.ndarray) -> list[LayerOutput]:
    """Run ``image`` through ``model`` in inference mode, keeping each layer's input and
    output (each node's, for a graph model).

    Shape:
        image: ``(H, W, C)``, the model's input shape.
    """
    from cnnumpy.graph_model import Model

    if isinstance(model, Model):
        return _graph_outputs(model, image)
    layers = list(model.layers)
    if not layers:
        raise ValueError("layer_outputs: the model has no layers")
    x = np.asarray(image)[np.newaxis].astype(layers[0].dtype)
    trace = []
    for index, layer in enumerate(layers):
        y = layer.forward(x, training=False)
        trace.append(LayerOutput(index, layer, x[0], np.asarray(y)[0]))
        x = y
    return trace


def _graph_outputs(model: Any, image: np.ndarray) -> list[LayerOutput]:
    from cnnumpy.graph_run import node_outputs
    from cnnumpy.layers.merge import Merge

    x = np.asarray(image)[np.newaxis].astype(model.input.dtype)
    if x.shape[1:] != model.input_shape:
        raise ValueError(f"layer_outputs: model {model.name!r} takes images of shape "
                         f"{model.input_shape}, received {x.shape[1:]}")
    values = node_outputs(model, x)
    trace = []
    for index, node in enumerate(model._nodes):
        inputs = [np.asarray(values[id(t)])[0] for t in node.inputs] or [x[0]]
        trace.append(LayerOutput(index, node.layer,
                                 inputs if isinstance(node.layer, Merge) else inputs[0],
                                 np.asarray(values[id(node.output)])[0], node,
                                 model.node_index(node)))
    return trace
