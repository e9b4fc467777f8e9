"""The Conv2D layer: parameter handling around :mod:`cnnumpy.functional.conv`."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import initializers
from cnnumpy.backend import xp
from cnnumpy.functional import conv
from cnnumpy.functional.im2col import (
    Pads,
    as_pair,
    conv_output_size,
    normalize_padding,
    resolve_padding,
)
from cnnumpy.layers.base import Layer


def _to_json(value: Any) -> Any:
    """Tuples (nested too) to lists, for configs."""
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value > 0)


def kernel_bias_backward(layer: Layer, backward: Any, dy: Any) -> Any:
    """``call_backward`` of a convolution with a ``kernel`` and an optional ``bias``:
    ``backward(dy, cache, need_dx=...)`` gives ``(dx, d_kernel, d_bias)``; fills ``grads``."""
    cache = getattr(layer, "_cache", None)
    if cache is None:
        raise ValueError(f"{layer.label}: backward called before forward")
    dx, layer.grads["kernel"], dbias = backward(xp.asarray(dy, dtype=layer.dtype), cache,
                                                need_dx=layer.needs_input_grad)
    if "bias" in layer.params:
        layer.grads["bias"] = dbias
    return dx


class Conv2D(Layer):
    """2-D convolution over channels-last images (a cross-correlation, as in every framework).

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "valid" (none); "same" (output size ``ceil(input / stride)``, the odd extra
            row/column at the bottom/right, as in TensorFlow); an int (all four sides); a pair
            (pad_h, pad_w) (both sides of each axis); or ((top, bottom), (left, right)).
        dilation_rate: int or (dh, dw): the spacing between kernel taps.
        groups: split the input channels into this many groups, each convolved with its own
            ``filters // groups`` filters; groups equal to the input channels is depthwise.
        use_bias: add a learned bias per filter (initialized to zeros).
        activation: name of an activation applied to the output, or None.
        kernel_initializer: name of an initializer in :mod:`cnnumpy.initializers`.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        input (batch, H, W, C); output (batch, Ho, Wo, filters) with
        ``Ho = (H + top + bottom - (kh - 1) * dh - 1) // sh + 1`` (likewise ``Wo``);
        kernel (kh, kw, C // groups, filters); bias (filters,).
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, int],
                 strides: int | tuple[int, int] = 1, padding: Any = "valid",
                 dilation_rate: int | tuple[int, int] = 1, groups: int = 1,
                 use_bias: bool = True, activation: str | None = None,
                 kernel_initializer: str = "glorot_uniform", input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        where = type(self).__name__
        if not _is_positive_int(filters):
            raise ValueError(f"{where}: filters must be a positive int, "
                             f"received filters={filters!r}")
        if not _is_positive_int(groups):
            raise ValueError(f"{where}: groups must be a positive int, received groups={groups!r}")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"{where}: use_bias must be True or False, "
                             f"received use_bias={use_bias!r}")
        self.filters = int(filters)
        self.kernel_size = as_pair(kernel_size, "kernel_size", where)
        self.strides = as_pair(strides, "strides", where)
        self.dilation_rate = as_pair(dilation_rate, "dilation_rate", where)
        self._padding = normalize_padding(padding, where)
        # Keep the form the user chose (for the config), with strings lower-cased.
        self.padding = padding.lower() if isinstance(padding, str) else _to_json(padding)
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        initializers.get(kernel_initializer, f"{where}: kernel_initializer")
        self.kernel_initializer = kernel_initializer
        super().__init__(activation=activation, input_shape=input_shape, name=name, dtype=dtype)
        self._cache: conv.ConvCache | None = None
        self._relu_inside = False  # the last forward applied the ReLU inside the convolution

    def _pads(self, input_shape: tuple[int, ...]) -> Pads:
        return resolve_padding(self._padding, (input_shape[0], input_shape[1]),
                               self.kernel_size, self.strides, self.dilation_rate)

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected per-sample input of shape (height, width, "
                             f"channels), received {input_shape}")
        height, width, channels = input_shape
        if channels % self.groups:
            raise ValueError(f"{self.label}: input channels ({channels}) must be divisible by "
                             f"groups={self.groups}")
        if self.filters % self.groups:
            raise ValueError(f"{self.label}: filters={self.filters} must be divisible by "
                             f"groups={self.groups}")
        (top, bottom), (left, right) = self._pads(input_shape)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        out_h = conv_output_size(height, kh, sh, top, bottom, dh)
        out_w = conv_output_size(width, kw, sw, left, right, dw)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"{self.label}: kernel_size={self.kernel_size} with dilation_rate="
                f"{self.dilation_rate} does not fit the input {input_shape[:2]} padded to "
                f"{(height + top + bottom, width + left + right)}")
        return out_h, out_w, self.filters

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {
            "kernel": (*self.kernel_size, input_shape[2] // self.groups, self.filters)}
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        if name == "bias":
            return initializers.zeros(shape, dtype=self._built_dtype())
        return initializers.get(self.kernel_initializer)(shape, dtype=self.dtype)

    def forward(self, x: Any, training: bool = False) -> Any:
        """As :meth:`Layer.forward`; a ReLU activation runs inside the convolution, chunk by
        chunk while each is in cache (same result, one pass over the output less), and its
        gradient inside the backward pass."""
        if self.activation != "relu":
            return super().forward(x, training)
        self._relu_inside = True
        return Layer.forward_logits(self, x, training)  # Layer's: it leaves the flag set

    def forward_logits(self, x: Any, training: bool = False) -> Any:
        self._relu_inside = False
        return super().forward_logits(x, training)

    def call(self, x: Any, training: bool) -> Any:
        y, self._cache = conv.conv2d_forward(
            x, self.params["kernel"], self.params.get("bias"), self.strides, self._padding,
            self.dilation_rate, self.groups, relu=self._relu_inside)
        return y

    def _activation_backward(self, dy: Any) -> Any:
        return dy if self._relu_inside else super()._activation_backward(dy)

    def call_backward(self, dy: Any) -> Any:
        return kernel_bias_backward(self, conv.conv2d_backward, dy)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            strides=list(self.strides),
            padding=self.padding,
            dilation_rate=list(self.dilation_rate),
            groups=self.groups,
            use_bias=self.use_bias,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
        )
        return config
