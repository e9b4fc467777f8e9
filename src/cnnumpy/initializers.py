"""Weight initializers, drawn from the library's seeded generator.

Fans follow Keras: for a kernel of shape ``(*receptive_field, fan_in_channels, fan_out_channels)``
``fan_in = prod(receptive_field) * shape[-2]`` and ``fan_out = prod(receptive_field) * shape[-1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cnnumpy.backend import rng, xp


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Dense ``(in, out)`` or conv ``(kh, kw, in, out)`` kernel."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def _uniform(limit: float, shape, dtype):
    return xp.asarray(rng().uniform(-limit, limit, size=shape), dtype=dtype)


def _normal(std: float, shape, dtype):
    return xp.asarray(rng().normal(0.0, std, size=shape), dtype=dtype)


def glorot_uniform(shape, dtype=np.float32):
    fan_in, fan_out = compute_fans(shape)
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)), shape, dtype)


def glorot_normal(shape, dtype=np.float32):
    fan_in, fan_out = compute_fans(shape)
    return _normal(math.sqrt(2.0 / (fan_in + fan_out)), shape, dtype)


def he_uniform(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _uniform(math.sqrt(6.0 / fan_in), shape, dtype)


def he_normal(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _normal(math.sqrt(2.0 / fan_in), shape, dtype)


def lecun_uniform(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _uniform(math.sqrt(3.0 / fan_in), shape, dtype)


def lecun_normal(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _normal(math.sqrt(1.0 / fan_in), shape, dtype)


def zeros(shape, dtype=np.float32):
    return xp.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return xp.ones(shape, dtype=dtype)


INITIALIZERS: dict[str, Callable] = {
    f.__name__: f
    for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal,
              zeros, ones)
}


def get(name: str, where: str = "initializer") -> Callable:
    """Look an initializer up by name, or raise a ValueError listing the accepted names."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(
            f"{where}: unknown initializer {name!r}; expected one of {sorted(INITIALIZERS)}"
        )
    return INITIALIZERS[name]
