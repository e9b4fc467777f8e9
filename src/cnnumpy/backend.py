"""The one place that decides the array module, the default dtype, the random generator and
how many threads kernels use.

Every kernel and layer gets its arrays through ``xp`` and its randomness through ``rng()``,
so a GPU backend (CuPy) is a change to this file, not to every layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
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


def column_sums(a: Any) -> Any:
    """``a.sum(axis=0)`` of a tall matrix as one matrix-vector product, several times faster
    than NumPy's reduction along the first axis (bias gradients, batch statistics).

    Shape:
        a: (M, F) -> (F,).
    """
    return xp.ones(a.shape[0], dtype=a.dtype) @ a


def rng() -> np.random.Generator:
    """Return the library's random generator (seed it with :func:`set_seed`)."""
    return _rng


def rng_state() -> dict[str, Any]:
    """Return the generator's state (a JSON-friendly dict), for checkpoints."""
    return dict(_rng.bit_generator.state)  # already a fresh dict: NumPy builds it per call


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generator's state saved by :func:`rng_state`."""
    _rng.bit_generator.state = state


# ----- threads ----------------------------------------------------------------------------------
# Kernels that work through the batch in chunks hand the chunks to a small pool of threads
# (NumPy releases the GIL in matrix products, copies and ufuncs). While they run, the BLAS is
# held to one thread per call, so that the two levels of threading never compete for the
# cores. Without threadpoolctl (which can limit the BLAS) the chunks run one after another.

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
_blas_depth = 0  # single_threaded_blas() blocks now open (the first one sets the limit)
_blas_saved: list[tuple[Any, int]] = []  # each BLAS library's thread count before that
_blas_own: list[tuple[Any, int]] | None = None  # their counts before set_num_threads limited them
_in_worker = threading.local()


def get_num_threads() -> int:
    """Return how many threads kernels may use (default: the CPUs this process may run on)."""
    return _num_threads


def set_num_threads(n: int | None = None) -> None:
    """Set how many threads kernels may use; 1 runs everything in the calling thread.

    The BLAS's matrix products are held to at most ``n`` threads too (where threadpoolctl can
    limit it; never more than it had): two processes on two cores with one thread each then
    run on two threads in all, not four.

    Args:
        n: a positive int, or None for the default (the CPUs available to this process, and
            the BLAS's own thread counts).
    """
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"set_num_threads: n must be a positive int or None, received n={n!r}")
    _num_threads = _available_cpus() if n is None else int(n)
    _limit_blas(None if n is None else int(n))


KEEP_FREED_BYTES = (32 * 2**20, 2**30)
"""glibc's ``M_MMAP_THRESHOLD`` (its maximum) and ``M_TRIM_THRESHOLD`` for
:func:`keep_freed_memory`."""


def keep_freed_memory() -> bool:
    """Have the C allocator keep the memory that arrays free, for the next ones, instead of
    giving it back to the system (glibc on Linux; elsewhere nothing changes).

    A training step frees and allocates the same large arrays every time. By default glibc maps
    arrays from 128 KiB (a threshold it raises as they are freed) straight from the system and
    returns freed memory at the top of its heap, so each step touches fresh pages, one page
    fault each. ResNet-20 at batch 128 (28x28, Intel Xeon, 2026-12-06): 3,000-17,000 faults
    and 227-253 ms a step; with this, 1,500 faults and 225 ms. The process then keeps its peak
    memory until it exits. ``cnnumpy train`` calls it (``bench/run.py --keep-freed-memory``
    too); it is process-wide.

    Returns:
        True where the allocator took both settings.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mmap_threshold, trim_threshold = KEEP_FREED_BYTES
    return bool(mallopt(-3, mmap_threshold) and mallopt(-1, trim_threshold))  # M_MMAP_, M_TRIM_


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


def _limit_blas(n: int | None) -> None:
    """Hold each BLAS library to ``min(n, its own count)`` threads; None: its own count again."""
    global _blas_own, _blas_saved
    if _blas_own is None and (n is None or not _blas_controller()):
        return  # never limited, or cannot be
    with _blas_lock:
        if _blas_own is None:
            _blas_own = [(lib, lib.get_num_threads()) for lib in _blas.lib_controllers]
        counts = [(lib, own if n is None else min(n, own)) for lib, own in _blas_own]
        if _blas_depth:  # inside single_threaded_blas(): its end sets these
            _blas_saved = counts
            return
        for lib, count in counts:
            lib.set_num_threads(count)


def threads_usable() -> bool:
    """True when kernels will run on several threads: more than one is allowed, the BLAS can
    be limited (threadpoolctl is installed), and this is not already one of those threads."""
    return (_num_threads > 1 and not getattr(_in_worker, "active", False)
            and bool(_blas_controller()))


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold the BLAS to one thread inside the block when :func:`threads_usable`.

    The kernels do this around their own threads. Wrapping a whole training step in it too
    keeps the BLAS's idle threads (which spin for a while after each call) from taking cores
    from the kernels' threads between kernels. Blocks may nest, also across threads; the BLAS
    gets its thread count back when the last one closes.
    """
    global _blas_depth, _blas_saved
    if not threads_usable():
        yield
        return
    with _blas_lock:
        if _blas_depth == 0:
            _blas_saved = [(lib, lib.get_num_threads()) for lib in _blas.lib_controllers]
            for lib, _ in _blas_saved:
                lib.set_num_threads(1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for lib, n in _blas_saved:
                    lib.set_num_threads(n)


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (_num_threads, os.getpid())  # a forked child cannot use its parent's threads
    with _blas_lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key is not None and _pool_key[1] == key[1]:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max(1, _num_threads - 1), thread_name_prefix="cnnumpy")
            _pool_key = key
        return _pool


def batch_slices(n: int, count: int) -> list[slice]:
    """``count`` contiguous slices of ``range(n)`` whose sizes differ by at most one, in
    order (the chunks that kernels and :func:`parallel_map` callers split a batch into)."""
    return [slice(n * k // count, n * (k + 1) // count) for k in range(count)]


def _run_in_worker(fn: Callable[[Any], Any], run: Sequence[Any]) -> list[Any]:
    _in_worker.active = True
    try:
        return [fn(item) for item in run]
    finally:
        _in_worker.active = False


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, spread over :func:`get_num_threads` threads: the
    calling thread and a pool of the others (ResNet-20's and MobileNetV2's training steps 3-10 %
    faster than handing every run to the pool): :mod:`cnnumpy.workers`' spinning threads
    where they can run, else (and for a second caller meanwhile) a ``ThreadPoolExecutor``'s.

    ``fn`` must be safe to run concurrently on different items (e.g. each writes only its own
    slice of a shared output). Results come back in the order of ``items``. It runs serially
    for one item or when not :func:`threads_usable` (e.g. inside another ``parallel_map``).
    """
    if len(items) < 2 or not threads_usable():
        return [fn(item) for item in items]
    # One task per thread, each a contiguous run of the items: fewer hand-offs than one task
    # per item, and each thread works through neighbouring memory.
    # The calling thread works through the first run itself: one hand-off fewer per call.
    count = min(_num_threads, len(items))
    runs = [items[len(items) * t // count:len(items) * (t + 1) // count] for t in range(count)]
    with single_threaded_blas():
        from cnnumpy import workers  # imports Numba: only once threads are used

        results = workers.map_runs(fn, runs, _run_in_worker)
        if results is not None:
            return results
        # no spinning threads here, or another thread is using them: the executor's
        futures = [_executor().submit(_run_in_worker, fn, run) for run in runs[1:]]
        try:
            first = _run_in_worker(fn, runs[0])
        finally:  # the others finish before anything (an error included) goes on
            wait(futures)
        return first + [result for future in futures for result in future.result()]


def run_together(fn: Callable[[int], Any], count: int) -> list[Any] | None:
    """``[fn(0), ..., fn(count - 1)]``, each call on its own thread at once (the caller's
    first), so they may wait for each other (:func:`cnnumpy.workers.meet`); None, calling
    nothing, where that cannot be promised (one call or thread, no workers, the pool busy)."""
    if count < 2 or not threads_usable():
        return None
    from cnnumpy import workers

    return workers.map_runs(fn, [[k] for k in range(count)], _run_in_worker)
