"""Data-parallel training over MPI: ``mpirun -n K python train.py`` with ``fit(distributed=True)``.

Each of the K processes ("ranks") holds a full copy of the model and trains on its share of
every global batch; one allreduce per step sums the gradients, so every rank applies the same
update and the weights stay identical. See docs/distributed.md.

MPI is optional (``pip install "cnnumpy[mpi]"`` installs mpi4py). Importing cnnumpy never
imports mpi4py; :func:`init` does, and only when the process was started by an MPI launcher
(``mpirun``, ``mpiexec``, ``srun``) or ``CNNUMPY_MPI=1`` is set. Otherwise ``size()`` is 1 and
everything here is a no-op, so the same script trains in one process.

Faults: a rank that raises inside :func:`abort_on_error` (``fit`` uses it) prints its traceback
and calls ``MPI.COMM_WORLD.Abort``, which stops every rank. A collective that waits longer than
``CNNUMPY_MPI_TIMEOUT`` seconds (default 300; a rank died or hangs) aborts the job the same way.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from cnnumpy import backend

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS")


class _World:
    comm: Any = None
    rank = 0
    size = 1
    initialized = False
    watchdog: _Watchdog | None = None


_world = _World()


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (or ``CNNUMPY_MPI=1``)."""
    forced = os.environ.get("CNNUMPY_MPI", "")
    if forced in ("0", "1"):
        return forced == "1"
    return any(var in os.environ for var in _LAUNCHER_VARS)


def init(timeout: float | None = None) -> int:
    """Join the MPI job, if there is one, and return the number of ranks (1 without MPI).

    Safe to call more than once. ``timeout`` (seconds, default ``CNNUMPY_MPI_TIMEOUT`` or
    300) bounds every collective wait; past it the job is aborted.

    Raises:
        ImportError: launched by an MPI launcher, but mpi4py is not installed.
    """
    if _world.initialized:
        if timeout is not None and _world.watchdog is not None:
            _world.watchdog.timeout = float(timeout)
        return _world.size
    if launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError('cnnumpy.distributed: this process was started by an MPI '
                              'launcher but mpi4py is not installed; pip install '
                              '"cnnumpy[mpi]"') from None
        _world.comm = MPI.COMM_WORLD
        _world.rank, _world.size = _world.comm.Get_rank(), _world.comm.Get_size()
        if _world.size > 1:
            sys.excepthook = _abort_hook(sys.excepthook)
            if timeout is None:
                timeout = float(os.environ.get("CNNUMPY_MPI_TIMEOUT", "300"))
            _world.watchdog = _Watchdog(float(timeout))
            _world.watchdog.start()
            # Ranks on one host share its cores: give each its share of kernel threads.
            local = _world.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
            backend.set_num_threads(max(1, backend.get_num_threads() // local))
    _world.initialized = True
    return _world.size


def rank() -> int:
    """This process's rank, from 0 (0 without MPI)."""
    init()
    return _world.rank


def size() -> int:
    """The number of ranks (1 without MPI)."""
    return init()


def joined() -> bool:
    """True once :func:`init` has joined a job of more than one rank (never calls it)."""
    return _world.size > 1


def is_root() -> bool:
    """True on rank 0, the rank that prints and writes files."""
    return rank() == 0


def abort(message: str, code: int = 1) -> None:
    """Print ``message`` on stderr and stop every rank (``exit`` without MPI)."""
    sys.stderr.write(f"cnnumpy.distributed: rank {_world.rank}/{_world.size}: {message}\n")
    sys.stderr.flush()
    if _world.comm is not None and _world.size > 1:
        _world.comm.Abort(code)
    os._exit(code)


@contextmanager
def abort_on_error() -> Iterator[None]:
    """Run a block; if it raises on one rank, print the error and abort all ranks.

    With one process the exception propagates unchanged. Without this, the other ranks would
    wait forever for the failed rank in their next collective.
    """
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if size() == 1:
            raise
        abort("raised an exception; aborting all ranks\n"
              + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())


def _abort_hook(previous: Any) -> Any:
    """An excepthook that, after the usual traceback, aborts the other ranks too."""

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        abort("an uncaught exception ends this rank; aborting all ranks")

    return hook


class _Watchdog(threading.Thread):
    """Aborts the job when one collective waits longer than ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        super().__init__(name="cnnumpy-mpi-watchdog", daemon=True)
        self.timeout = timeout
        self.deadline: float | None = None
        self.what = ""

    def run(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                abort(f"waited more than {self.timeout:g} s in {self.what}; another rank has "
                      "died or hangs (CNNUMPY_MPI_TIMEOUT sets this limit)")

    @contextmanager
    def watch(self, what: str) -> Iterator[None]:
        self.what = what
        self.deadline = time.monotonic() + self.timeout
        try:
            yield
        finally:
            self.deadline = None


@contextmanager
def _watched(what: str) -> Iterator[None]:
    if _world.watchdog is None:
        yield
    else:
        with _world.watchdog.watch(what):
            yield


def allreduce_sum_(buffer: np.ndarray) -> np.ndarray:
    """Sum a contiguous array over all ranks, in place; returns it."""
    if size() > 1:
        from mpi4py import MPI

        with _watched(f"an allreduce of {buffer.nbytes:,} bytes"):
            _world.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
    return buffer


def allreduce_mean(array: Any) -> np.ndarray:
    """The element-wise mean of ``array`` over all ranks (a new array, same shape and dtype).

    Every rank must pass an array of the same shape and dtype.
    """
    out = np.array(array, copy=True, order="C")
    if out.dtype.kind != "f":
        out = out.astype(np.float64)
    return allreduce_sum_(out) / size() if size() > 1 else out


def broadcast(array: Any, root: int = 0) -> np.ndarray:
    """Rank ``root``'s ``array`` on every rank (a new array; same shape and dtype everywhere)."""
    out = np.array(array, copy=True, order="C")
    if size() > 1:
        with _watched(f"a broadcast of {out.nbytes:,} bytes"):
            _world.comm.Bcast(out, root=root)
    return out


def broadcast_object(obj: Any, root: int = 0) -> Any:
    """Rank ``root``'s small Python object (pickled by MPI) on every rank."""
    if size() == 1:
        return obj
    with _watched("a broadcast"):
        return _world.comm.bcast(obj, root=root)


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    return bool(allreduce_sum_(np.array([1.0 if flag else 0.0]))[0] > 0)


# ----- the pieces of data-parallel training that fit(distributed=True) uses ----------------
def shard(idx: Any) -> Any:
    """This rank's contiguous share of a global batch (a slice or an index array).

    Shares differ by at most one sample; when the batch has fewer samples than there are
    ranks, some shares are empty (those ranks still join the step's allreduce).
    """
    n = idx.stop - idx.start if isinstance(idx, slice) else len(idx)
    lo, hi = n * rank() // size(), n * (rank() + 1) // size()
    return slice(idx.start + lo, idx.start + hi) if isinstance(idx, slice) else idx[lo:hi]


def pack(arrays: list[Any], extra: list[float], dtype: Any) -> np.ndarray:
    """One contiguous buffer holding every array, flattened, then the ``extra`` numbers."""
    total = sum(int(a.size) for a in arrays) + len(extra)
    buffer = np.empty(total, dtype=dtype)
    offset = 0
    for a in arrays:
        buffer[offset:offset + a.size] = a.reshape(-1)
        offset += a.size
    buffer[offset:] = extra
    return buffer


def unpack(buffer: np.ndarray, like: list[Any]) -> tuple[list[Any], list[float]]:
    """Split a :func:`pack` buffer back into arrays shaped (and typed) like ``like``."""
    arrays, offset = [], 0
    for a in like:
        arrays.append(buffer[offset:offset + a.size].reshape(a.shape).astype(a.dtype, copy=False))
        offset += a.size
    return arrays, [float(v) for v in buffer[offset:]]


def common_dtype(arrays: list[Any]) -> Any:
    """The arrays' dtype when they share one, else float64."""
    dtypes = {np.dtype(a.dtype) for a in arrays}
    return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)


def model_state(model: Any) -> list[Any]:
    """Every layer's non-trainable state arrays (BatchNormalization's moving statistics)."""
    return [layer.state[k] for layer in model.layers for k in sorted(layer.state)]


def synchronize_model(model: Any) -> None:
    """Give every rank rank 0's weights, layer state, optimizer state and generator state."""
    from cnnumpy import backend

    optimizer = model.optimizer
    meta = broadcast_object({"iterations": optimizer.iterations, "slots": bool(optimizer.state),
                             "rng": backend.rng_state()})
    params, _ = model.trainable_weights()
    if meta["slots"] and not optimizer.state:
        optimizer.state = {i: {name: np.zeros_like(p) for name in optimizer._slot_names()}
                           for i, p in enumerate(params)}
    slots = [optimizer.state[i][name] for i in sorted(optimizer.state)
             for name in sorted(optimizer.state[i])] if meta["slots"] else []
    arrays = [*params, *model_state(model), *slots]
    if arrays:
        received, _ = unpack(broadcast(pack(arrays, [], common_dtype(arrays))), arrays)
        for target, value in zip(arrays, received, strict=True):
            target[...] = value
    if not meta["slots"]:
        optimizer.state = {}
    optimizer.iterations = meta["iterations"]
    backend.set_rng_state(meta["rng"])


def average_state(model: Any) -> None:
    """Replace each layer's state by its mean over the ranks (one allreduce)."""
    arrays = model_state(model)
    if arrays and size() > 1:
        summed = allreduce_sum_(pack(arrays, [], common_dtype(arrays)))
        averaged, _ = unpack(summed / size(), arrays)
        for target, value in zip(arrays, averaged, strict=True):
            target[...] = value
