"""Augmentation layers: random image transforms applied only while training.

At inference each layer is the identity (RandomCrop: the center window, which is the image
itself when the crop size equals the image size), so the layers are saved with a model and
vanish at ``predict``. Draws come from :func:`cnnumpy.backend.rng`, one per image, so
:func:`cnnumpy.set_seed` fixes them. Every transform is linear in the image (given its
draws), and ``call_backward`` applies its exact transpose, so the layers may sit anywhere in
a model. The pure kernels live in :mod:`cnnumpy.functional.augment`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy.backend import rng, xp
from cnnumpy.functional.augment import (
    rotation_taps,
    sample,
    sample_backward,
    window,
    window_backward,
)
from cnnumpy.layers.base import Layer


# ----- argument checks ---------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(v)


def _factor_range(where: str, name: str, value: Any, limit: float) -> tuple[float, float]:
    """A factor ``f`` (meaning ``(-f, f)``) or a pair ``(low, high)`` in ``[-limit, limit]``."""
    pair = value if isinstance(value, (tuple, list)) else None
    if pair is None and _is_number(value) and 0 <= value <= limit:
        return -float(value), float(value)
    if pair is not None and len(pair) == 2 and all(map(_is_number, pair)) \
            and -limit <= pair[0] <= pair[1] <= limit:
        return float(pair[0]), float(pair[1])
    raise ValueError(f"{where}: {name} must be a float in [0, {limit:g}] or a pair (low, high) "
                     f"with -{limit:g} <= low <= high <= {limit:g}, received {name}={value!r}")


def _as_config(value: Any) -> Any:
    return [float(v) for v in value] if isinstance(value, (tuple, list)) else float(value)


def _fill(where: str, value: Any) -> float:
    if not _is_number(value):
        raise ValueError(f"{where}: fill_value must be a finite float, "
                         f"received fill_value={value!r}")
    return float(value)


class _Augmentation(Layer):
    """Shared parts: image inputs (H, W, C), the identity at inference, a linear backward."""

    def __init__(self, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self._backward_fn: Any = None  # the transpose of the last forward's transform

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected images (height, width, channels), "
                             f"received input shape {input_shape}")
        return input_shape

    def call(self, x: Any, training: bool) -> Any:
        if not training:
            self._backward_fn = lambda dy: dy
            return x
        return self.augment(x)

    def augment(self, x: Any) -> Any:
        """The random transform of a training batch, given by each layer.

        Shape:
            ``x`` ``(batch, height, width, channels)``; returns the same shape.
        """
        raise NotImplementedError

    def call_backward(self, dy: Any) -> Any:
        if self._backward_fn is None:
            raise ValueError(f"{self.label}: backward called before forward")
        return self._backward_fn(dy) if self.needs_input_grad else None


class RandomFlip(_Augmentation):
    """Flip each image left-right and/or upside down, each with probability 1/2.

    Args:
        mode: "horizontal", "vertical" or "horizontal_and_vertical" (independent draws).

    Shape:
        (N, H, W, C) -> (N, H, W, C).
    """

    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode: str = "horizontal", *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"RandomFlip: mode must be one of {list(self.MODES)}, "
                             f"received mode={mode!r}")
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.mode = mode

    def augment(self, x: Any) -> Any:
        flips = []  # (axis, per-image mask); a flip is its own inverse and its own transpose
        for axis, word in ((2, "horizontal"), (1, "vertical")):
            if word in self.mode:
                flips.append((axis, (rng().random(len(x)) < 0.5)[:, None, None, None]))

        def apply(a: Any) -> Any:
            for axis, mask in flips:
                a = xp.where(mask, xp.flip(a, axis=axis), a)
            return a

        self._backward_fn = apply
        return apply(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


class RandomTranslation(_Augmentation):
    """Shift each image by a random whole number of pixels, filling the uncovered border.

    Args:
        height_factor: a float f (shifts up to ``f * H`` rows either way) or a pair
            ``(low, high)`` of fractions of H in [-1, 1]; positive shifts move the image down.
        width_factor: the same for columns; positive shifts move the image right.
        fill_value: the value of the uncovered pixels.

    Shape:
        (N, H, W, C) -> (N, H, W, C).
    """

    def __init__(self, height_factor: float | tuple, width_factor: float | tuple,
                 fill_value: float = 0.0, *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        self._ranges = [_factor_range("RandomTranslation", arg, value, 1.0)
                        for arg, value in (("height_factor", height_factor),
                                           ("width_factor", width_factor))]
        self.fill_value = _fill("RandomTranslation", fill_value)
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.height_factor, self.width_factor = height_factor, width_factor

    def augment(self, x: Any) -> Any:
        n, h, w = x.shape[:3]
        shifts = [rng().integers(math.ceil(low * size - 1e-9),
                                 math.floor(high * size + 1e-9) + 1, size=n)
                  for (low, high), size in zip(self._ranges, (h, w), strict=True)]
        top, left = -shifts[0], -shifts[1]
        self._backward_fn = lambda dy: window_backward(dy, top, left, h, w)
        return window(x, top, left, h, w, self.fill_value)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": _as_config(self.height_factor),
                "width_factor": _as_config(self.width_factor), "fill_value": self.fill_value}


class RandomCrop(_Augmentation):
    """Pad each image with ``padding`` zeros on every side, then cut a random window.

    At inference: the center window of the padded image (the image itself when ``height``
    and ``width`` equal its size, the usual choice).

    Args:
        height, width: the size of the window (positive ints, at most the padded size).
        padding: zeros added on each side first (an int >= 0).

    Shape:
        (N, H, W, C) -> (N, height, width, C).
    """

    def __init__(self, height: int, width: int, padding: int = 0, *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        for arg, value, low in (("height", height, 1), ("width", width, 1),
                                ("padding", padding, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < low:
                raise ValueError(f"RandomCrop: {arg} must be an int >= {low}, "
                                 f"received {arg}={value!r}")
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.height, self.width, self.padding = int(height), int(width), int(padding)

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = super()._output_shape(input_shape)
        if self.height > h + 2 * self.padding or self.width > w + 2 * self.padding:
            raise ValueError(f"{self.label}: a {self.height}x{self.width} window does not fit "
                             f"in a {h}x{w} image padded by {self.padding}")
        return (self.height, self.width, c)

    def call(self, x: Any, training: bool) -> Any:
        n, h, w = x.shape[:3]
        if not training and (self.height, self.width) == (h, w):
            return super().call(x, training)  # the center window is the image itself
        room_h, room_w = h + 2 * self.padding - self.height, w + 2 * self.padding - self.width
        if training:
            top, left = rng().integers(0, room_h + 1, size=n), rng().integers(0, room_w + 1, n)
        else:
            top, left = xp.full(n, room_h // 2), xp.full(n, room_w // 2)
        top, left = top - self.padding, left - self.padding
        self._backward_fn = lambda dy: window_backward(dy, top, left, h, w)
        return window(x, top, left, self.height, self.width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "padding": self.padding}


class RandomRotation(_Augmentation):
    """Rotate each image by a random angle about its center, filling uncovered corners.

    Args:
        factor: a fraction of a full turn: f draws angles in ``[-f * 2 pi, f * 2 pi]``; a pair
            ``(low, high)`` in [-1, 1] draws in ``[low * 2 pi, high * 2 pi]``. Positive angles
            turn the image counter-clockwise. Small values (0.02 to 0.1) suit augmentation.
        fill_value: the value of pixels that come from outside the image.
        interpolation: "bilinear" or "nearest".

    Shape:
        (N, H, W, C) -> (N, H, W, C).
    """

    def __init__(self, factor: float | tuple, fill_value: float = 0.0,
                 interpolation: str = "bilinear", *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        self._range = _factor_range("RandomRotation", "factor", factor, 1.0)
        self.fill_value = _fill("RandomRotation", fill_value)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError("RandomRotation: interpolation must be 'bilinear' or 'nearest', "
                             f"received interpolation={interpolation!r}")
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.factor, self.interpolation = factor, interpolation

    def augment(self, x: Any) -> Any:
        n, h, w = x.shape[:3]
        low, high = self._range
        angles = rng().uniform(low, high, size=n) * 2 * math.pi
        taps = rotation_taps(angles, h, w, self.interpolation)
        self._backward_fn = lambda dy: sample_backward(dy, taps, h, w)
        return sample(x, taps, self.fill_value)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": _as_config(self.factor),
                "fill_value": self.fill_value, "interpolation": self.interpolation}


class RandomContrast(_Augmentation):
    """Scale each image's deviation from its per-channel mean by a random factor:
    ``y = (x - mean) * c + mean``, with ``mean`` over height and width and one ``c`` per image.
    Unlike Keras, the result is not clipped to a value range.

    Args:
        factor: a float f draws ``c`` in ``[1 - f, 1 + f]``; a pair ``(lower, upper)`` draws
            in ``[1 - lower, 1 + upper]``. Both in [0, 1].

    Shape:
        (N, H, W, C) -> (N, H, W, C).
    """

    def __init__(self, factor: float | tuple, *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        if isinstance(factor, (tuple, list)):
            ok = len(factor) == 2 and all(_is_number(f) and 0 <= f <= 1 for f in factor)
        else:
            ok = _is_number(factor) and 0 <= factor <= 1
        if not ok:
            raise ValueError("RandomContrast: factor must be a float in [0, 1] or a pair "
                             f"(lower, upper) of floats in [0, 1], received factor={factor!r}")
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.factor = factor
        self._range = tuple(factor) if isinstance(factor, (tuple, list)) else (factor, factor)

    def augment(self, x: Any) -> Any:
        lower, upper = self._range
        c = rng().uniform(1 - lower, 1 + upper, size=(len(x), 1, 1, 1)).astype(x.dtype)
        # y = c x + (1 - c) mean(x): its transpose is dx = c dy + (1 - c) mean(dy).
        self._backward_fn = lambda dy: c * dy + (1 - c) * dy.mean(axis=(1, 2), keepdims=True)
        return c * x + (1 - c) * x.mean(axis=(1, 2), keepdims=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": _as_config(self.factor)}
