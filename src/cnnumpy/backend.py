"""The one place that decides the array module, the default dtype and the random generator.

Every kernel and layer gets its arrays through ``xp`` and its randomness through ``rng()``,
so a GPU backend (CuPy) is a change to this file, not to every layer.
"""

from __future__ import annotations

import numpy as np

xp = np
"""The array module used by every kernel (NumPy today)."""

_FLOAT_DTYPES = ("float32", "float64")
_floatx = np.dtype("float32")
_rng = np.random.default_rng()


def floatx() -> np.dtype:
    """Return the default floating dtype for new weights (float32 unless changed)."""
    return _floatx


def set_floatx(dtype: str | np.dtype) -> None:
    """Set the default floating dtype for weights built from now on.

    Args:
        dtype: "float32" or "float64".
    """
    global _floatx
    _floatx = as_float_dtype(dtype, "set_floatx")


def as_float_dtype(dtype: str | np.dtype | type, where: str) -> np.dtype:
    """Return ``dtype`` as a NumPy float32/float64 dtype, or raise a TypeError naming ``where``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(
            f"{where}: dtype must be float32 or float64, received dtype={dtype!r}") from exc
    if dt.name not in _FLOAT_DTYPES:
        raise TypeError(f"{where}: dtype must be float32 or float64, received dtype={dt.name!r}")
    return dt


def set_seed(seed: int) -> None:
    """Seed all randomness in cnnumpy: initialization, shuffling and dropout.

    NumPy's global random state is never touched; the library draws only from its own
    ``numpy.random.Generator``, so the same seed gives bit-identical results in any process.
    """
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_seed: seed must be a non-negative integer, received seed={seed!r}")
    _rng = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    """Return the library's random generator (seed it with :func:`set_seed`)."""
    return _rng


def rng_state() -> dict:
    """Return the generator's state (a JSON-friendly dict), for checkpoints."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore the generator's state saved by :func:`rng_state`."""
    _rng.bit_generator.state = state
