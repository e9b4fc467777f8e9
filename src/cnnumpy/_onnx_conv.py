"""ONNX nodes of DepthwiseConv2D, SeparableConv2D and Conv2DTranspose, for
:mod:`cnnumpy.onnx` (which owns the graph under construction, ``g``; see its ``_Graph``).

=====================  ====================================================================
cnnumpy layer          ONNX operators
=====================  ====================================================================
DepthwiseConv2D        Conv with ``group`` = input channels
SeparableConv2D        Conv (``group`` = input channels, no bias), then a 1x1 Conv
Conv2DTranspose        ConvTranspose (pads: what Keras' padding cuts; output_padding: rows
                       added at the end)
=====================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy import layers
from cnnumpy.functional.conv import resolve_padding
from cnnumpy.functional.conv_transpose import transpose_geometry


def _weight(layer: layers.Layer, key: str) -> np.ndarray:
    return np.asarray(layer.get_weights()[key], dtype=np.float32)


def _grouped_conv(g: Any, layer: Any, shape: tuple[int, ...], kernel: np.ndarray,
                  bias_key: str | None) -> None:
    """One Conv node of ``kernel`` (kh, kw, 1, C * M), one group per input channel."""
    (top, bottom), (left, right) = resolve_padding(
        layer.padding, (shape[0], shape[1]), layer.kernel_size, layer.strides,
        layer.dilation_rate)
    inputs = [g.const(f"{layer.name}/depthwise_kernel", kernel.transpose(3, 2, 0, 1))]
    if bias_key is not None:
        inputs.append(g.const(f"{layer.name}/bias", _weight(layer, bias_key)))
    g.apply("Conv", layer.name, *inputs, kernel_shape=list(layer.kernel_size),
            strides=list(layer.strides), dilations=list(layer.dilation_rate), group=shape[2],
            pads=[top, left, bottom, right])


def depthwise(g: Any, layer: layers.DepthwiseConv2D | layers.SeparableConv2D,
              shape: tuple[int, ...]) -> None:
    """A DepthwiseConv2D's Conv node; a SeparableConv2D's two."""
    g.to_layout("NCHW", layer.name)
    channels, multiplier = shape[2], layer.depth_multiplier
    separable = type(layer) is layers.SeparableConv2D
    kernel = _weight(layer, "depthwise_kernel" if separable else "kernel")
    kernel = kernel.reshape(*layer.kernel_size, 1, channels * multiplier)
    _grouped_conv(g, layer, shape, kernel, "bias" if layer.use_bias and not separable else None)
    if separable:
        pointwise = [g.const(f"{layer.name}/pointwise_kernel",
                             _weight(layer, "pointwise_kernel").transpose(3, 2, 0, 1))]
        if layer.use_bias:
            pointwise.append(g.const(f"{layer.name}/bias", _weight(layer, "bias")))
        g.apply("Conv", layer.name, *pointwise, kernel_shape=[1, 1])


def conv_transpose(g: Any, layer: layers.Conv2DTranspose, shape: tuple[int, ...]) -> None:
    """One ConvTranspose node: ``pads`` cut rows of the full output at each end, and
    ``output_padding`` adds the zero rows Keras' sizes may have beyond it, at the end."""
    g.to_layout("NCHW", layer.name)
    extra = layer.output_padding or (None, None)
    begins, ends, added = [], [], []
    for a in (0, 1):
        size, (before, _) = transpose_geometry(shape[a], layer.kernel_size[a], layer.strides[a],
                                               layer.dilation_rate[a], layer.padding, extra[a])
        full = (shape[a] - 1) * layer.strides[a] + (layer.kernel_size[a] - 1) \
            * layer.dilation_rate[a] + 1
        after = full - before - size
        begins.append(before)
        ends.append(max(after, 0))
        added.append(max(-after, 0))
    inputs = [g.const(f"{layer.name}/kernel", _weight(layer, "kernel").transpose(3, 2, 0, 1))]
    if layer.use_bias:
        inputs.append(g.const(f"{layer.name}/bias", _weight(layer, "bias")))
    g.apply("ConvTranspose", layer.name, *inputs, kernel_shape=list(layer.kernel_size),
            strides=list(layer.strides), dilations=list(layer.dilation_rate),
            pads=[*begins, *ends], output_padding=added)


CONVERTERS: dict[type, Callable[[Any, Any, tuple[int, ...]], None]] = {
    layers.DepthwiseConv2D: depthwise, layers.SeparableConv2D: depthwise,
    layers.Conv2DTranspose: conv_transpose}
"""The layer classes this module exports, each with the function that adds its nodes."""
