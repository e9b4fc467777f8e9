"""Reshaping layers: UpSampling2D, ZeroPadding2D, Cropping2D and Reshape (as in Keras)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy.backend import xp
from cnnumpy.functional import resize
from cnnumpy.layers.base import Layer
from cnnumpy.layers.pooling import _as_pair, _check_image_shape

Margins = tuple[tuple[int, int], tuple[int, int]]


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 0)


def _margins(value: Any, arg: str, cls: str) -> Margins:
    """Keras' three forms as ``((top, bottom), (left, right))``: an int (all four sides), a
    pair ``(rows, cols)`` (both sides of each axis) or a pair of pairs."""
    if _is_count(value):
        return (int(value), int(value)), (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        if all(_is_count(v) for v in value):
            rows, cols = int(value[0]), int(value[1])
            return (rows, rows), (cols, cols)
        if all(isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_count(q) for q in v)
               for v in value):
            (top, bottom), (left, right) = value
            return (int(top), int(bottom)), (int(left), int(right))
    raise ValueError(f"{cls}: {arg} must be a non-negative int, a pair (rows, cols) or "
                     f"((top, bottom), (left, right)) of non-negative ints, "
                     f"received {arg}={value!r}")


class UpSampling2D(Layer):
    """Repeat (or interpolate) the rows and columns of channels-last images.

    Args:
        size: the upsampling factors, an int or ``(rows, cols)``.
        interpolation: "nearest" (repeat each pixel) or "bilinear" (half-pixel centres:
            PyTorch's ``interpolate(..., align_corners=False)``); see
            :mod:`cnnumpy.functional.resize`.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        (N, H, W, C) -> (N, H * rows, W * cols, C).
    """

    def __init__(self, size: int | tuple[int, int] = 2, interpolation: str = "nearest", *,
                 input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        cls = type(self).__name__
        self.size = _as_pair(size, "size", cls)
        if not isinstance(interpolation, str) or interpolation not in resize.INTERPOLATIONS:
            raise ValueError(f"{cls}: interpolation must be one of {resize.INTERPOLATIONS}, "
                             f"received interpolation={interpolation!r}")
        self.interpolation = interpolation
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_image_shape(self, input_shape)
        h, w, c = input_shape
        return h * self.size[0], w * self.size[1], c

    def call(self, x: Any, training: bool) -> Any:
        return resize.upsample2d(x, self.size, self.interpolation)

    def call_backward(self, dy: Any) -> Any:
        return resize.upsample2d_backward(dy, self.size, self.interpolation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": list(self.size),
                "interpolation": self.interpolation}


class ZeroPadding2D(Layer):
    """Add rows and columns of zeros around channels-last images.

    Args:
        padding: an int (all four sides), ``(rows, cols)`` (both sides of each axis) or
            ``((top, bottom), (left, right))``.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        (N, H, W, C) -> (N, top + H + bottom, left + W + right, C).
    """

    def __init__(self, padding: Any = 1, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        self.padding = _margins(padding, "padding", type(self).__name__)
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_image_shape(self, input_shape)
        (top, bottom), (left, right) = self.padding
        h, w, c = input_shape
        return top + h + bottom, left + w + right, c

    def call(self, x: Any, training: bool) -> Any:
        return xp.pad(x, ((0, 0), *self.padding, (0, 0)))

    def call_backward(self, dy: Any) -> Any:
        (top, _), (left, _) = self.padding
        h, w, _ = self._built_shape()
        return dy[:, top:top + h, left:left + w]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class Cropping2D(Layer):
    """Remove rows and columns at the borders of channels-last images.

    Args:
        cropping: an int (all four sides), ``(rows, cols)`` (both sides of each axis) or
            ``((top, bottom), (left, right))``.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        (N, H, W, C) -> (N, H - top - bottom, W - left - right, C).
    """

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        self.cropping = _margins(cropping, "cropping", type(self).__name__)
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_image_shape(self, input_shape)
        (top, bottom), (left, right) = self.cropping
        h, w, c = input_shape
        if top + bottom >= h or left + right >= w:
            raise ValueError(f"{self.label}: cropping={self.cropping} leaves nothing of "
                             f"images of size {(h, w)}")
        return h - top - bottom, w - left - right, c

    def call(self, x: Any, training: bool) -> Any:
        (top, bottom), (left, right) = self.cropping
        h, w, _ = self._built_shape()
        return x[:, top:h - bottom, left:w - right]

    def call_backward(self, dy: Any) -> Any:
        (top, bottom), (left, right) = self.cropping
        return xp.pad(dy, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": [list(c) for c in self.cropping]}


class Reshape(Layer):
    """Give each sample a new shape with the same number of elements (row-major order, so
    NHWC images keep their channels last).

    Args:
        target_shape: the per-sample output shape, positive ints with at most one -1 (the
            dimension that makes the sizes agree), e.g. ``(7, 7, 16)`` or ``(-1, 8)``.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        ``(N, *input_shape)`` -> ``(N, *target_shape)``.
    """

    def __init__(self, target_shape: Any, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        cls = type(self).__name__
        dims = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else ()
        ok = len(dims) > 0 and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d > 0 or d == -1)
            for d in dims) and list(dims).count(-1) <= 1
        if not ok:
            raise ValueError(f"{cls}: target_shape must be a non-empty tuple of positive ints "
                             f"with at most one -1, received target_shape={target_shape!r}")
        self.target_shape = tuple(int(d) for d in dims)
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size or -1 in self.target_shape:
            raise ValueError(f"{self.label}: cannot reshape inputs of per-sample shape "
                             f"{input_shape} ({size} elements) to target_shape="
                             f"{self.target_shape}")
        return self.target_shape

    def call(self, x: Any, training: bool) -> Any:
        return x.reshape(len(x), *self._output_shape(self._built_shape()))

    def call_backward(self, dy: Any) -> Any:
        return dy.reshape(len(dy), *self._built_shape())

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}
