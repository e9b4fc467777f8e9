"""Export a :class:`~cnnumpy.Sequential` or a graph :class:`~cnnumpy.Model` to ONNX, for
onnxruntime and other ONNX runtimes.

    from cnnumpy import onnx as cnnumpy_onnx
    cnnumpy_onnx.export(model, "digits.onnx")          # needs: pip install "cnnumpy[onnx]"

The graph takes what :meth:`Sequential.predict` takes, a float32 batch named ``input`` of
shape ``(batch, *input_shape)`` (images NHWC, the batch size symbolic), and returns what it
returns, as ``output``. Inside, images are transposed once to NCHW (the layout of ONNX's Conv
and pooling operators) and back to NHWC only where the order matters (Flatten, Dense, the
output), so a flattened feature vector is in the same order as in cnnumpy. Every layer maps to
standard operators of the default domain:

=====================  ====================================================================
cnnumpy layer          ONNX operators
=====================  ====================================================================
Conv2D                 Conv (strides, pads from every padding form, dilations, group)
DepthwiseConv2D        Conv (group = input channels); SeparableConv2D: that, then a 1x1 Conv
Conv2DTranspose        ConvTranspose (pads and output_padding give Keras' output size)
MaxPool2D              MaxPool ("same": explicit pads, the extra one at the bottom/right)
AvgPool2D              AveragePool (explicit pads, ``count_include_pad=0``)
GlobalAvg/MaxPool2D    GlobalAveragePool / GlobalMaxPool, then Flatten
Flatten                Flatten (on NHWC)
Dense                  Gemm (2-D input) or MatMul + Add
BatchNormalization     BatchNormalization (inference: the moving statistics)
activations            Relu, LeakyRelu (0.01), Elu (1.0), Gelu (tanh approximation; opset
                       20, or built from Tanh, Mul and Add before 20), Sigmoid, Tanh, Softmax,
                       Clip (relu6), Sigmoid and Mul (swish, silu)
Dropout, Activation    Identity (Activation(None)/"linear"; Dropout at inference)
augmentation layers    Identity; RandomCrop smaller than the image: Pad and Slice (center)
UpSampling2D           Resize (nearest: asymmetric, floor; bilinear: linear, half_pixel)
ZeroPadding2D          Pad
Cropping2D             Slice
Reshape                Reshape (on NHWC)
ReLU                   Relu, Clip (max_value only), LeakyRelu (negative_slope only), else
                       Greater, Min, Sub, Mul and Where
=====================  ====================================================================

A graph model's nodes follow in topological order, its merge layers as Add/Sum, Sub, Mul,
Mean and Concat (see :mod:`cnnumpy._onnx_graph`). Weights are stored as float32 (a float64
model is exported in float32). Only the exact classes
above are exported; anything else raises a ValueError naming the layer, and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import onnx
    from onnx import helper, numpy_helper
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('cnnumpy.onnx needs the onnx package: pip install "cnnumpy[onnx]"') from exc

from cnnumpy import (
    __version__,
    _onnx_activations,
    _onnx_conv,
    _onnx_graph,
    _onnx_reshaping,
    files,
    layers,
)
from cnnumpy.functional.conv import resolve_padding
from cnnumpy.functional.pooling import pool_padding
from cnnumpy.graph_model import Model

DEFAULT_OPSET = 17
"""Opset of exported models unless asked otherwise: runs on onnxruntime >= 1.12 and most
other runtimes."""
MIN_OPSET = 13
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


class _Graph:
    """Nodes and initializers under construction, and where the current tensor stands.

    ``x`` names the current tensor, ``rank`` is its rank (batch included) and ``layout`` says
    whether a rank-4 tensor is NHWC (as in cnnumpy) or NCHW (as ONNX's Conv wants).
    """

    def __init__(self, opset: int, rank: int) -> None:
        self.opset, self.rank, self.layout, self.x = opset, rank, "NHWC", "input"
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = {"input", "output"}
        self._views: dict[tuple[str, str], str] = {}  # (tensor, layout): its transpose

    def fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self._used:
            name, n = f"{base}_{n}", n + 1
        self._used.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.fresh(base)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.fresh(f"{base}/{op_type}")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def apply(self, op_type: str, base: str, *extra: str, **attrs: Any) -> None:
        """Replace the current tensor by ``op_type(current, *extra)``."""
        self.x = self.op(op_type, [self.x, *extra], base, **attrs)

    def to_layout(self, layout: str, base: str) -> None:
        """Transpose a rank-4 current tensor to ``layout`` (once per tensor: a graph's
        tensor may feed several layers)."""
        if self.rank == 4 and self.layout != layout:
            if (self.x, layout) not in self._views:
                view = self.op("Transpose", [self.x], base,
                               perm=_TO_NCHW if layout == "NCHW" else _TO_NHWC)
                self._views[self.x, layout], self._views[view, self.layout] = view, self.x
            self.x, self.layout = self._views[self.x, layout], layout

    def spatial_axes(self) -> tuple[int, int]:
        return (1, 2) if self.layout == "NHWC" else (2, 3)


def _f32(layer: layers.Layer, key: str) -> np.ndarray:
    return np.asarray(layer.get_weights()[key], dtype=np.float32)


# ----- one function per layer class: (graph, layer, per-sample input shape) ---------------------
def _conv(g: _Graph, layer: layers.Conv2D, shape: tuple[int, ...]) -> None:
    g.to_layout("NCHW", layer.name)
    (top, bottom), (left, right) = resolve_padding(
        layer.padding, (shape[0], shape[1]), layer.kernel_size, layer.strides,
        layer.dilation_rate)
    inputs = [g.const(f"{layer.name}/kernel", _f32(layer, "kernel").transpose(3, 2, 0, 1))]
    if layer.use_bias:
        inputs.append(g.const(f"{layer.name}/bias", _f32(layer, "bias")))
    g.apply("Conv", layer.name, *inputs, kernel_shape=list(layer.kernel_size),
            strides=list(layer.strides), dilations=list(layer.dilation_rate),
            group=layer.groups, pads=[top, left, bottom, right])


def _pool(g: _Graph, layer: layers.MaxPool2D | layers.AvgPool2D, shape: tuple[int, ...]) -> None:
    g.to_layout("NCHW", layer.name)
    (kh, kw), (sh, sw) = layer.pool_size, layer.strides
    _, top, bottom = pool_padding(shape[0], kh, sh, layer.padding)
    _, left, right = pool_padding(shape[1], kw, sw, layer.padding)
    attrs: dict[str, Any] = {"kernel_shape": [kh, kw], "strides": [sh, sw],
                             "pads": [top, left, bottom, right]}
    if isinstance(layer, layers.AvgPool2D):
        g.apply("AveragePool", layer.name, count_include_pad=0, **attrs)
    else:
        g.apply("MaxPool", layer.name, **attrs)


def _global_pool(g: _Graph, layer: layers.Layer, shape: tuple[int, ...]) -> None:
    g.to_layout("NCHW", layer.name)
    is_max = isinstance(layer, layers.GlobalMaxPool2D)
    g.apply("GlobalMaxPool" if is_max else "GlobalAveragePool", layer.name)
    g.apply("Flatten", layer.name, axis=1)


def _flatten(g: _Graph, layer: layers.Flatten, shape: tuple[int, ...]) -> None:
    g.to_layout("NHWC", layer.name)
    g.apply("Flatten", layer.name, axis=1)


def _dense(g: _Graph, layer: layers.Dense, shape: tuple[int, ...]) -> None:
    g.to_layout("NHWC", layer.name)  # Dense works on the last axis: channels
    kernel = g.const(f"{layer.name}/kernel", _f32(layer, "kernel"))
    bias = [g.const(f"{layer.name}/bias", _f32(layer, "bias"))] if layer.use_bias else []
    if g.rank == 2:
        g.apply("Gemm", layer.name, kernel, *bias)
        return
    g.apply("MatMul", layer.name, kernel)
    if bias:
        g.apply("Add", layer.name, *bias)


def _batch_norm(g: _Graph, layer: layers.BatchNormalization, shape: tuple[int, ...]) -> None:
    g.to_layout("NCHW", layer.name)  # ONNX normalizes axis 1
    moved = g.rank not in (2, 4)
    if moved:  # other channels-last tensors: move the channels to axis 1 and back
        g.apply("Transpose", layer.name, perm=[0, g.rank - 1, *range(1, g.rank - 1)])
    names = [g.const(f"{layer.name}/{key}", _f32(layer, key))
             for key in ("gamma", "beta", "moving_mean", "moving_variance")]
    g.apply("BatchNormalization", layer.name, *names, epsilon=layer.epsilon)
    if moved:
        g.apply("Transpose", layer.name, perm=[0, *range(2, g.rank), 1])


def _identity(g: _Graph, layer: layers.Layer, shape: tuple[int, ...]) -> None:
    g.apply("Identity", layer.name)


CONVERTERS: dict[type, Callable[[_Graph, Any, tuple[int, ...]], None]] = {
    layers.Conv2D: _conv, layers.MaxPool2D: _pool, layers.AvgPool2D: _pool,
    layers.GlobalAvgPool2D: _global_pool, layers.GlobalMaxPool2D: _global_pool,
    layers.Flatten: _flatten, layers.Dense: _dense, layers.BatchNormalization: _batch_norm,
    layers.Activation: _identity, layers.Dropout: _identity, layers.RandomFlip: _identity,
    layers.RandomTranslation: _identity, layers.RandomRotation: _identity,
    layers.RandomContrast: _identity, layers.RandomErasing: _identity,
    layers.RandomCrop: _onnx_reshaping.random_crop,
    **_onnx_reshaping.CONVERTERS,
    **_onnx_conv.CONVERTERS,
}
"""The layer classes that export, each with the function that adds its nodes."""


def _layer(g: _Graph, layer: layers.Layer, shape: tuple[int, ...]) -> None:
    """The nodes of one single-input layer, its activation included."""
    CONVERTERS[type(layer)](g, layer, shape)
    g.rank = len(layer.compute_output_shape(shape)) + 1
    if layer.activation is not None:
        _onnx_activations.activation(g, layer.activation, layer.name)


def _check_opset(opset: int | None) -> int:
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"cnnumpy.onnx: opset must be an int from {MIN_OPSET} to {newest}, "
                         f"received opset={opset!r}")
    return int(opset)


def to_onnx(model: Any, opset: int | None = None) -> onnx.ModelProto:
    """Build the ONNX model of a built :class:`~cnnumpy.Sequential` or of a graph
    :class:`~cnnumpy.Model` (see the module docstring).

    Args:
        model: a built Sequential (trained, loaded, or built with ``build(input_shape)``), or
            a Model.
        opset: ONNX opset of the default domain, from 13; default :data:`DEFAULT_OPSET`.

    Raises:
        ValueError: the model is not built, a layer has no ONNX mapping (the error names it),
            or ``opset`` is out of range.

    Shape:
        input ``(batch, *model.input_shape)`` float32; output ``(batch, *model.output_shape)``.
    """
    opset = _check_opset(opset)
    if not getattr(model, "layers", None) or not model.built:
        raise ValueError("cnnumpy.onnx: the model is not built yet; train it, load it, or call "
                         "model.build(input_shape) first")
    graph = isinstance(model, Model)
    unsupported = _onnx_graph.unsupported(model, CONVERTERS, graph)
    if unsupported:
        raise ValueError(f"cnnumpy.onnx: no ONNX mapping for {', '.join(unsupported)}; "
                         f"supported layers: {', '.join(c.__name__ for c in CONVERTERS)}"
                         + (", " + ", ".join(c.__name__ for c in _onnx_graph.MERGES)
                            if graph else ""))
    g = _Graph(opset, len(model.input_shape) + 1)
    if graph:
        _onnx_graph.add_graph(g, model, _layer)
    else:
        for layer in model.layers:
            _layer(g, layer, layer.input_shape)
    g.to_layout("NHWC", "output")
    if g.nodes and g.nodes[-1].output[0] == g.x:
        g.nodes[-1].output[0] = "output"
    else:  # the output is a tensor made earlier (or the input itself)
        g.nodes.append(helper.make_node("Identity", [g.x], ["output"], name="output"))
    value_info = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", *shape])
                  for name, shape in (("input", model.input_shape),
                                      ("output", model.output_shape))]
    proto_graph = helper.make_graph(g.nodes, model.name or "cnnumpy", value_info[:1],
                                    value_info[1:], initializer=g.initializers)
    opset_id = helper.make_opsetid("", opset)
    proto = helper.make_model(proto_graph, opset_imports=[opset_id], producer_name="cnnumpy",
                              producer_version=__version__,
                              doc_string="Exported by cnnumpy; input NHWC float32.")
    proto.ir_version = helper.find_min_ir_version_for([opset_id])
    return proto


def export(model: Any, path: str | os.PathLike, opset: int | None = None) -> None:
    """Write ``model`` to ``path`` as an ONNX file that passes ``onnx.checker`` (full check).

    The file is written atomically: on any error, ``path`` is left as it was.

    Args:
        model: a built :class:`~cnnumpy.Sequential`, or a :class:`~cnnumpy.Model`.
        path: where to write, usually ``*.onnx``.
        opset: ONNX opset, from 13; default :data:`DEFAULT_OPSET`.

    Raises:
        ValueError: see :func:`to_onnx`; ``onnx.checker.ValidationError`` if the graph does
            not validate (a bug: please report it).
    """
    proto = to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    files.atomic_write(os.fspath(path), proto.SerializeToString())
