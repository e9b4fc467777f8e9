"""DepthwiseConv2D and SeparableConv2D: parameter handling around
:mod:`cnnumpy.functional.conv_depthwise` (the grouped convolution of ``Conv2D``, with Keras'
kernel layouts)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import initializers
from cnnumpy.backend import xp
from cnnumpy.functional import conv_depthwise
from cnnumpy.functional.im2col import (
    Pads,
    as_pair,
    conv_output_size,
    normalize_padding,
    resolve_padding,
)
from cnnumpy.layers.base import Layer
from cnnumpy.layers.conv import _is_positive_int, _to_json, kernel_bias_backward


class _ConvArgs(Layer):
    """The arguments every convolution here stores (by :func:`_store_conv_args`), as Conv2D."""

    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    dilation_rate: tuple[int, int]
    padding: Any  # the user's form, for the config
    _padding: str | Pads  # the normalized form, for the kernels
    use_bias: bool


class DepthwiseConv2D(_ConvArgs):
    """Depthwise 2-D convolution: each input channel convolved with its own
    ``depth_multiplier`` kernels (Conv2D with ``groups`` equal to the input channels).

    Args:
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "valid", "same" (as TensorFlow) or explicit pads, as in
            :class:`~cnnumpy.layers.Conv2D`.
        depth_multiplier: output channels per input channel.
        dilation_rate: int or (dh, dw).
        use_bias: add a learned bias per output channel (initialized to zeros).
        activation: name of an activation applied to the output, or None.
        depthwise_initializer: name of an initializer in :mod:`cnnumpy.initializers`.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        input (batch, H, W, C); output (batch, Ho, Wo, C * depth_multiplier), ``Ho`` and
        ``Wo`` as for Conv2D; output channel ``c * depth_multiplier + m`` comes from input
        channel ``c``; kernel (kh, kw, C, depth_multiplier); bias (C * depth_multiplier,).
    """

    def __init__(self, kernel_size: int | tuple[int, int], strides: int | tuple[int, int] = 1,
                 padding: Any = "valid", depth_multiplier: int = 1,
                 dilation_rate: int | tuple[int, int] = 1, use_bias: bool = True,
                 activation: str | None = None, depthwise_initializer: str = "glorot_uniform",
                 input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        where = type(self).__name__
        if not _is_positive_int(depth_multiplier):
            raise ValueError(f"{where}: depth_multiplier must be a positive int, "
                             f"received depth_multiplier={depth_multiplier!r}")
        self.depth_multiplier = int(depth_multiplier)
        _store_conv_args(self, where, kernel_size, strides, padding, dilation_rate, use_bias)
        initializers.get(depthwise_initializer, f"{where}: depthwise_initializer")
        self.depthwise_initializer = depthwise_initializer
        super().__init__(activation=activation, input_shape=input_shape, name=name, dtype=dtype)
        self._cache: Any = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*_conv_hw(self, input_shape), input_shape[2] * self.depth_multiplier)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        channels = input_shape[2]
        shapes: dict[str, tuple[int, ...]] = {
            "kernel": (*self.kernel_size, channels, self.depth_multiplier)}
        if self.use_bias:
            shapes["bias"] = (channels * self.depth_multiplier,)
        return shapes

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        if name == "bias":
            return initializers.zeros(shape, dtype=self._built_dtype())
        return initializers.get(self.depthwise_initializer)(shape, dtype=self.dtype)

    def call(self, x: Any, training: bool) -> Any:
        y, self._cache = conv_depthwise.depthwise_conv2d_forward(
            x, self.params["kernel"], self.params.get("bias"), self.strides, self._padding,
            self.dilation_rate)
        return y

    def call_backward(self, dy: Any) -> Any:
        return kernel_bias_backward(self, conv_depthwise.depthwise_conv2d_backward, dy)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(_conv_config(self), depth_multiplier=self.depth_multiplier,
                      depthwise_initializer=self.depthwise_initializer)
        return config


class SeparableConv2D(_ConvArgs):
    """Depthwise-separable 2-D convolution, as Keras: a depthwise convolution (no bias), then
    a 1x1 convolution to ``filters`` channels with the bias, then the activation.

    Args:
        filters: number of output channels.
        kernel_size, strides, padding, depth_multiplier, dilation_rate: of the depthwise
            step, as in :class:`DepthwiseConv2D`.
        use_bias: add a learned bias per filter (initialized to zeros).
        activation: name of an activation applied to the output, or None.
        depthwise_initializer, pointwise_initializer: names of initializers in
            :mod:`cnnumpy.initializers`.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        input (batch, H, W, C); output (batch, Ho, Wo, filters), ``Ho`` and ``Wo`` as for
        Conv2D; depthwise_kernel (kh, kw, C, depth_multiplier); pointwise_kernel
        (1, 1, C * depth_multiplier, filters); bias (filters,).
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, int],
                 strides: int | tuple[int, int] = 1, padding: Any = "valid",
                 depth_multiplier: int = 1, dilation_rate: int | tuple[int, int] = 1,
                 use_bias: bool = True, activation: str | None = None,
                 depthwise_initializer: str = "glorot_uniform",
                 pointwise_initializer: str = "glorot_uniform", input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        where = type(self).__name__
        for arg, value in (("filters", filters), ("depth_multiplier", depth_multiplier)):
            if not _is_positive_int(value):
                raise ValueError(f"{where}: {arg} must be a positive int, "
                                 f"received {arg}={value!r}")
        self.filters = int(filters)
        self.depth_multiplier = int(depth_multiplier)
        _store_conv_args(self, where, kernel_size, strides, padding, dilation_rate, use_bias)
        initializers.get(depthwise_initializer, f"{where}: depthwise_initializer")
        initializers.get(pointwise_initializer, f"{where}: pointwise_initializer")
        self.depthwise_initializer = depthwise_initializer
        self.pointwise_initializer = pointwise_initializer
        super().__init__(activation=activation, input_shape=input_shape, name=name, dtype=dtype)
        self._cache: Any = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*_conv_hw(self, input_shape), self.filters)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        channels, multiplier = input_shape[2], self.depth_multiplier
        shapes: dict[str, tuple[int, ...]] = {
            "depthwise_kernel": (*self.kernel_size, channels, multiplier),
            "pointwise_kernel": (1, 1, channels * multiplier, self.filters)}
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        if name == "bias":
            return initializers.zeros(shape, dtype=self._built_dtype())
        init = self.depthwise_initializer if name == "depthwise_kernel" \
            else self.pointwise_initializer
        return initializers.get(init)(shape, dtype=self.dtype)

    def call(self, x: Any, training: bool) -> Any:
        y, self._cache = conv_depthwise.separable_conv2d_forward(
            x, self.params["depthwise_kernel"], self.params["pointwise_kernel"],
            self.params.get("bias"), self.strides, self._padding, self.dilation_rate)
        return y

    def call_backward(self, dy: Any) -> Any:
        if self._cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        dy = xp.asarray(dy, dtype=self.dtype)
        dx, self.grads["depthwise_kernel"], self.grads["pointwise_kernel"], dbias = \
            conv_depthwise.separable_conv2d_backward(dy, self._cache,
                                                     need_dx=self.needs_input_grad)
        if self.use_bias:
            self.grads["bias"] = dbias
        return dx

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, **_conv_config(self),
                      depth_multiplier=self.depth_multiplier,
                      depthwise_initializer=self.depthwise_initializer,
                      pointwise_initializer=self.pointwise_initializer)
        return config


# ----- shared by both (and by nothing else) -------------------------------------------------


def _store_conv_args(layer: _ConvArgs, where: str, kernel_size: Any, strides: Any, padding: Any,
                     dilation_rate: Any, use_bias: Any) -> None:
    """Validate and store the arguments every convolution takes, as Conv2D does."""
    if not isinstance(use_bias, (bool, np.bool_)):
        raise ValueError(f"{where}: use_bias must be True or False, received use_bias={use_bias!r}")
    layer.kernel_size = as_pair(kernel_size, "kernel_size", where)
    layer.strides = as_pair(strides, "strides", where)
    layer.dilation_rate = as_pair(dilation_rate, "dilation_rate", where)
    layer._padding = normalize_padding(padding, where)
    layer.padding = padding.lower() if isinstance(padding, str) else _to_json(padding)
    layer.use_bias = bool(use_bias)


def _conv_hw(layer: _ConvArgs, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(Ho, Wo)`` of the (depthwise) convolution, or a ValueError naming the layer."""
    if len(input_shape) != 3:
        raise ValueError(f"{layer.label}: expected per-sample input of shape (height, width, "
                         f"channels), received {input_shape}")
    height, width = input_shape[:2]
    (top, bottom), (left, right) = resolve_padding(
        layer._padding, (height, width), layer.kernel_size, layer.strides, layer.dilation_rate)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    out_h = conv_output_size(height, kh, sh, top, bottom, dh)
    out_w = conv_output_size(width, kw, sw, left, right, dw)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{layer.label}: kernel_size={layer.kernel_size} with dilation_rate="
            f"{layer.dilation_rate} does not fit the input {input_shape[:2]} padded to "
            f"{(height + top + bottom, width + left + right)}")
    return out_h, out_w


def _conv_config(layer: _ConvArgs) -> dict[str, Any]:
    return dict(kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                padding=layer.padding, dilation_rate=list(layer.dilation_rate),
                use_bias=layer.use_bias, activation=layer.activation)
