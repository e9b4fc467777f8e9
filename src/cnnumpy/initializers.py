"""Weight initializers, drawn from the library's seeded generator.

Fans follow Keras: for a kernel of shape ``(*receptive_field, fan_in_channels, fan_out_channels)``
``fan_in = prod(receptive_field) * shape[-2]`` and ``fan_out = prod(receptive_field) * shape[-1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from cnnumpy.backend import rng, xp


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Dense ``(in, out)`` or conv ``(kh, kw, in, out)`` kernel."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def _uniform(limit: float, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    return xp.asarray(rng().uniform(-limit, limit, size=shape), dtype=dtype)


def _normal(std: float, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    return xp.asarray(rng().normal(0.0, std, size=shape), dtype=dtype)


def glorot_uniform(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Uniform in ``+-sqrt(6 / (fan_in + fan_out))`` (Xavier; Keras' default for kernels).

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    fan_in, fan_out = compute_fans(shape)
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)), shape, dtype)


def glorot_normal(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Normal with std ``sqrt(2 / (fan_in + fan_out))``.

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    fan_in, fan_out = compute_fans(shape)
    return _normal(math.sqrt(2.0 / (fan_in + fan_out)), shape, dtype)


def he_uniform(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Uniform in ``+-sqrt(6 / fan_in)`` (Kaiming, for ReLU layers).

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    fan_in, _ = compute_fans(shape)
    return _uniform(math.sqrt(6.0 / fan_in), shape, dtype)


def he_normal(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Normal with std ``sqrt(2 / fan_in)`` (Kaiming, for ReLU layers).

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    fan_in, _ = compute_fans(shape)
    return _normal(math.sqrt(2.0 / fan_in), shape, dtype)


def lecun_uniform(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Uniform in ``+-sqrt(3 / fan_in)``.

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    fan_in, _ = compute_fans(shape)
    return _uniform(math.sqrt(3.0 / fan_in), shape, dtype)


def lecun_normal(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Normal with std ``sqrt(1 / fan_in)``.

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    fan_in, _ = compute_fans(shape)
    return _normal(math.sqrt(1.0 / fan_in), shape, dtype)


def zeros(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """All zeros (biases, BatchNormalization's beta).

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    return xp.zeros(shape, dtype=dtype)


def ones(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """All ones (BatchNormalization's gamma).

    Shape:
        ``shape``, e.g. ``(kh, kw, in_channels, filters)`` for a conv kernel.
    """
    return xp.ones(shape, dtype=dtype)


INITIALIZERS: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f
    for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal,
              zeros, ones)
}


def get(name: str, where: str = "initializer") -> Callable[..., np.ndarray]:
    """Look an initializer up by name, or raise a ValueError listing the accepted names."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(
            f"{where}: unknown initializer {name!r}; expected one of {sorted(INITIALIZERS)}"
        )
    return INITIALIZERS[name]
