"""Pooling layers for channels-last images: windowed max/average and global pools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy.functional import pooling as F
from cnnumpy.layers.base import Layer


def _as_pair(value: Any, arg: str, cls: str) -> tuple[int, int]:
    """An int or a pair of ints, all positive, as a pair; else a ValueError quoting ``value``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(items) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in items)
    if not ok:
        raise ValueError(f"{cls}: {arg} must be a positive int or a pair of positive ints, "
                         f"received {arg}={value!r}")
    return int(items[0]), int(items[1])


def _check_image_shape(layer: Layer, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"{layer.label}: expected inputs of shape (batch, height, width, "
                         f"channels), received per-sample shape {input_shape}")


class _Pool2D(Layer):
    """Shared arguments, shapes and config of the windowed pools."""

    # (x, pool_size, strides, padding) -> (y, cache); (dy, cache) -> dx
    _forward: Callable[[Any, Any, Any, str], tuple[Any, tuple]] = staticmethod(
        F.max_pool2d_forward)
    _backward: Callable[[Any, tuple], Any] = staticmethod(F.max_pool2d_backward)

    def __init__(self, pool_size: int | tuple[int, int] = 2,
                 strides: int | tuple[int, int] | None = None, padding: str = "valid", *,
                 input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        cls = type(self).__name__
        self.pool_size = _as_pair(pool_size, "pool_size", cls)
        self.strides = self.pool_size if strides is None else _as_pair(strides, "strides", cls)
        if not isinstance(padding, str) or padding.lower() not in F.PADDINGS:
            raise ValueError(f"{cls}: padding must be one of {F.PADDINGS}, "
                             f"received padding={padding!r}")
        self.padding = padding.lower()
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self._cache: tuple | None = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_image_shape(self, input_shape)
        h, w, c = input_shape
        out_h = F.pool_output_size(h, self.pool_size[0], self.strides[0], self.padding)
        out_w = F.pool_output_size(w, self.pool_size[1], self.strides[1], self.padding)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"{self.label}: pool_size={self.pool_size} is larger than the "
                             f"input's spatial size {(h, w)} with padding={self.padding!r}")
        return out_h, out_w, c

    def call(self, x: Any, training: bool) -> Any:
        y, self._cache = self._forward(x, self.pool_size, self.strides, self.padding)
        return y

    def call_backward(self, dy: Any) -> Any:
        if self._cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        return self._backward(dy, self._cache)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPool2D(_Pool2D):
    """Max pooling over windows of each channel.

    Args:
        pool_size: window size, an int or ``(pool_h, pool_w)``.
        strides: step between windows, an int or a pair; default: ``pool_size``.
        padding: "valid" (no padding) or "same" (``out = ceil(in / stride)``, padded with
            ``-inf`` so padding is never the maximum).

    Shape:
        (N, H, W, C) -> (N, H_out, W_out, C).

    Example:
        >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 9]], "float32")
        >>> MaxPool2D(2)(x.reshape(1, 4, 4, 1))[0, ..., 0]
        array([[6., 8.],
               [3., 9.]], dtype=float32)
    """

    _backward = staticmethod(F.max_pool2d_backward)

    def call(self, x: Any, training: bool) -> Any:
        # outside training the offsets of the maxima are found only if backward is called
        y, self._cache = F.max_pool2d_forward(x, self.pool_size, self.strides, self.padding,
                                              training)
        return y


class AvgPool2D(_Pool2D):
    """Average pooling over windows of each channel; "same" padding averages real elements only.

    Args:
        pool_size: window size, an int or ``(pool_h, pool_w)``.
        strides: step between windows, an int or a pair; default: ``pool_size``.
        padding: "valid" or "same" (``out = ceil(in / stride)``).

    Shape:
        (N, H, W, C) -> (N, H_out, W_out, C).
    """

    _forward = staticmethod(F.avg_pool2d_forward)
    _backward = staticmethod(F.avg_pool2d_backward)


class _GlobalPool2D(Layer):
    """Shared shapes of the global pools: (N, H, W, C) -> (N, C)."""

    _forward = staticmethod(F.global_avg_pool2d_forward)
    _backward = staticmethod(F.global_avg_pool2d_backward)

    def __init__(self, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self._cache: tuple | None = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_image_shape(self, input_shape)
        return (input_shape[2],)

    def call(self, x: Any, training: bool) -> Any:
        y, self._cache = self._forward(x)
        return y

    def call_backward(self, dy: Any) -> Any:
        if self._cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        return self._backward(dy, self._cache)


class GlobalAvgPool2D(_GlobalPool2D):
    """Mean of each channel over the whole image.

    Shape:
        (N, H, W, C) -> (N, C).
    """


class GlobalMaxPool2D(_GlobalPool2D):
    """Maximum of each channel over the whole image (gradient to the first maximum).

    Shape:
        (N, H, W, C) -> (N, C).
    """

    _forward = staticmethod(F.global_max_pool2d_forward)
    _backward = staticmethod(F.global_max_pool2d_backward)


MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
GlobalAveragePooling2D = GlobalAvgPool2D
GlobalMaxPooling2D = GlobalMaxPool2D
