"""``RandomErasing``: a random box of each training image replaced by noise (Zhong et al.,
2017, "Random Erasing Data Augmentation"), an augmentation layer like those of
:mod:`cnnumpy.layers.preprocessing`: the identity at inference, draws from
:func:`cnnumpy.backend.rng`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy.backend import rng, xp
from cnnumpy.functional.augment import box_mask
from cnnumpy.layers.preprocessing import _Augmentation, _fill, _is_number


def _pair(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """``(a, b)`` with ``low < a <= b <= high``."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value)) \
            and low < value[0] <= value[1] <= high:
        return float(value[0]), float(value[1])
    raise ValueError(f"RandomErasing: {name} must be a pair (a, b) with {low:g} < a <= b <= "
                     f"{high:g}, received {name}={value!r}")


class RandomErasing(_Augmentation):
    """Replace one random box of each image, with probability ``factor``, by noise or a
    constant.

    The box covers a fraction of the image's area drawn uniformly from ``scale``, with its
    height over its width drawn log-uniformly from ``ratio``; its sides are rounded to whole
    pixels and cut to the image's (where Zhong et al. draw again), and it sits anywhere it
    fits, uniformly. Unlike Keras, ``factor`` is the probability itself (Keras draws one per
    image between 0 and ``factor``) and the noise is uniform over ``value_range``, whose
    default is the range of the CLI's images, [0, 1].

    Args:
        factor: the probability that an image is erased, in [0, 1].
        scale: ``(low, high)``: the fraction of the image's area the box covers, in (0, 1].
        ratio: ``(low, high)``: the box's height over its width, positive.
        fill_value: the value of every erased pixel, or None (default) for noise: each
            erased pixel and channel drawn uniformly from ``value_range``.
        value_range: ``(low, high)`` of the noise.

    Shape:
        (N, H, W, C) -> (N, H, W, C).
    """

    def __init__(self, factor: float = 0.5, scale: tuple = (0.02, 0.33),
                 ratio: tuple = (0.3, 3.3), fill_value: float | None = None,
                 value_range: tuple = (0.0, 1.0), *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        if not (_is_number(factor) and 0 <= factor <= 1):
            raise ValueError(f"RandomErasing: factor must be a probability in [0, 1], "
                             f"received factor={factor!r}")
        self.scale = _pair("scale", scale, 0.0, 1.0)
        self.ratio = _pair("ratio", ratio, 0.0, math.inf)
        self.value_range = _pair("value_range", value_range, -math.inf, math.inf)
        self.fill_value = None if fill_value is None else _fill("RandomErasing", fill_value)
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.factor = float(factor)

    def augment(self, x: Any) -> Any:
        n, h, w = x.shape[:3]
        g = rng()
        area = g.uniform(*self.scale, size=n) * (h * w)
        low, high = math.log(self.ratio[0]), math.log(self.ratio[1])
        ratio = np.exp(g.uniform(low, high, size=n))
        height = np.clip(np.round(np.sqrt(area * ratio)), 1, h).astype(np.int64)
        width = np.clip(np.round(np.sqrt(area / ratio)), 1, w).astype(np.int64)
        top, left = g.integers(0, h - height + 1), g.integers(0, w - width + 1)
        erased = g.random(n) < self.factor
        mask = box_mask(top, left, height, width, h, w) & xp.asarray(erased)[:, None, None, None]
        if self.fill_value is None:
            fill = xp.asarray(g.uniform(*self.value_range, size=x.shape), dtype=x.dtype)
        else:
            fill = x.dtype.type(self.fill_value)
        self._backward_fn = lambda dy: xp.where(mask, dy.dtype.type(0), dy)
        return xp.where(mask, fill, x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "scale": list(self.scale),
                "ratio": list(self.ratio), "fill_value": self.fill_value,
                "value_range": list(self.value_range)}
