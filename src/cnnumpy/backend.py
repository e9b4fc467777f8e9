"""The one place that decides the array module, the default dtype, the random generator and
how many threads kernels use.

Every kernel and layer gets its arrays through ``xp`` and its randomness through ``rng()``,
so a GPU backend (CuPy) is a change to this file, not to every layer.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


# ----- threads ----------------------------------------------------------------------------------
# Kernels that work through the batch in chunks may hand the chunks to a small pool of threads
# (NumPy releases the GIL in matrix products, copies and ufuncs). While they run, the BLAS
# library is held to one thread per call, so the two levels of threading never compete for
# the cores. Without threadpoolctl (which can limit the BLAS) the chunks run one after another.

def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_num_threads = _available_cpus()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] | None = None  # (threads, process id) the pool was made for
_blas: Any = None  # threadpoolctl's controller of the BLAS libraries; False when unavailable
_blas_lock = threading.Lock()
_blas_depth = 0  # parallel regions now running (the BLAS limit is set by the first)
_blas_saved: list[tuple[Any, int]] = []  # each BLAS library's thread count before the first
_in_worker = threading.local()


def get_num_threads() -> int:
    """Return how many threads kernels may use (default: the CPUs this process may run on)."""
    return _num_threads


def set_num_threads(n: int | None = None) -> None:
    """Set how many threads kernels may use; 1 runs everything in the calling thread.

    Args:
        n: a positive int, or None for the default (the CPUs available to this process).
    """
    global _num_threads
    if n is None:
        _num_threads = _available_cpus()
        return
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int or None, received n={n!r}")
    _num_threads = int(n)


def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS, made once; False without threadpoolctl."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas")
        except Exception:  # not installed, or it cannot inspect this process
            _blas = False
    return _blas


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (threads, os.getpid())  # a forked child cannot use its parent's threads
    if _pool_key != key:
        if _pool is not None and _pool_key[1] == key[1]:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="cnnumpy")
        _pool_key = key
    return _pool


def _run_in_worker(fn: Callable[[Any], Any], item: Any) -> Any:
    _in_worker.active = True
    try:
        return fn(item)
    finally:
        _in_worker.active = False


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, spread over :func:`get_num_threads` threads.

    ``fn`` must be safe to run concurrently on different items (e.g. each writes only its
    own slice of a shared output). Results come back in the order of ``items``. It runs
    serially with one thread, one item, inside another ``parallel_map``, or without
    threadpoolctl.
    """
    threads = min(_num_threads, len(items))
    if threads < 2 or getattr(_in_worker, "active", False) or not _blas_controller():
        return [fn(item) for item in items]
    global _blas_depth, _blas_saved
    with _blas_lock:
        if _blas_depth == 0:
            _blas_saved = [(lib, lib.get_num_threads()) for lib in _blas.lib_controllers]
            for lib, _ in _blas_saved:
                lib.set_num_threads(1)
        _blas_depth += 1
        pool = _executor(_num_threads)
    try:
        return list(pool.map(_run_in_worker, itertools.repeat(fn), items))
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for lib, n in _blas_saved:
                    lib.set_num_threads(n)
