"""The library's worker threads, which wait for their next task by spinning before they sleep.

:func:`cnnumpy.backend.parallel_map` hands each call's runs of items to these threads. A
thread woken from sleep (a lock or a queue: a system call, and on a virtual machine an
interrupt between processors) starts 25-35 microseconds later on the 2-core machines here,
and handing the result back costs as much again: about 60 microseconds a call in all, the
time of a Python lock's round trip between two threads. A ResNet-20 training step at batch 32
makes about 145 such calls. So each thread here first polls a counter in compiled code,
without the interpreter lock, calling ``sched_yield`` between looks (about 0.5 microseconds a
look), for up to :data:`SPINS` looks, and only then sleeps on a semaphore; the calling thread
waits for the results the same way. A call then costs 3-4 microseconds when both sides are
spinning. That is what OpenMP runtimes do between parallel regions (PyTorch's threads
included). A worker says it is done from that compiled code, after letting go of the
interpreter lock (:meth:`_Signal.wait`'s ``after``): said while holding it, the caller saw it
at once, found the lock taken and slept until the worker let go, 85 microseconds a call on
average in ResNet-20's training step (about 10 ms of a step at batch 32); now the caller
takes the lock at once. Paired training steps at batch 32 (2026-12-06, AMD EPYC VM):
ResNet-20 1.07-1.08x, MobileNetV2 1.03-1.04x, the stacks even.

Used where Numba is (:mod:`cnnumpy.functional.fast.compiled`) on a POSIX system (which has
``sched_yield``); elsewhere ``parallel_map`` uses a ``ThreadPoolExecutor``. Checked by
``tests/test_workers.py`` and ``tests/functional/test_threading.py`` (whose ``parallel_map``
tests run both ways).

:func:`meet` lets the parts of one call of :func:`cnnumpy.backend.run_together` (one part per
thread, all running at once) wait for each other inside a compiled kernel: a pass that needs
totals over the whole batch (batch normalization's sums, then its second pass) runs as one
parallel call instead of two, one hand-over fewer. A part that fails before it gets there
counts in :data:`ABORTS`, which lets the others give up waiting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled

SPINS = 1000
"""Looks at a counter (about 0.5 ms here) before a waiting thread sleeps: a worker waiting for
its next task, or the caller for a worker's results. Between a training step's calls (a
median gap of 60-100 microseconds in ResNet-20's) a worker keeps spinning; once the work
stops it sleeps within this time. Spinning has a cost of its own: while a thread of the
process runs, every page the process gives back to the system (glibc does so for large
arrays unless :func:`cnnumpy.backend.keep_freed_memory` was called) interrupts its processor
to flush stale addresses. A-B on a 2-core AMD EPYC VM (2026-12-06, steps interleaved, paired
medians against the executor): training at batch 32 and 64, ResNet-20 1.03-1.09x, MobileNetV2
1.12-1.19x, LeNet-like 1.03x; LeNet-like inference at batch 256 0.90x with 4,000 looks, 0.93x
with 400, and even (0.998x) once freed memory is kept."""


_sched_yield: Any = (compiled.numba.types.ExternalFunction("sched_yield", compiled.numba.int32())
                     if compiled.AVAILABLE and os.name == "posix" else None)

ABORTS = np.zeros(1, dtype=np.int64)
"""Raised by one whenever a task fails in a worker or in the caller of :meth:`Pool.map`: parts
waiting in :func:`meet` for a part that will never come stop waiting. Pass it to compiled code
as an argument: Numba copies a global array into the code, so it would never see a change."""


def _spin(counter: Any, value: int, spins: int, post: Any,
          post_value: int) -> bool:  # pragma: no cover (compiled)
    """``post[0] = post_value`` if ``post`` has an element; then True once
    ``counter[0] >= value``, False after ``spins`` looks. The call to ``sched_yield`` (opaque
    to the compiler) makes every look read the memory again."""
    if post.shape[0] > 0:
        post[0] = post_value
    for _ in range(spins):
        if counter[0] >= value:
            return True
        _sched_yield()
    return counter[0] >= value


# defined at module level, not in a closure, so that Numba's disk cache finds it again in the
# next process (a closure's entry was compiled and written anew by every process)
_spin_until: Any = compiled.jit(_spin) if _sched_yield is not None else None
_NO_POST = np.zeros(0, dtype=np.int64)


def _make_fence() -> Any:
    """A compiled full memory fence (``fence seq_cst``): writes made before it are seen by
    every thread before writes made after it, and the compiler moves no memory access across
    it. None without Numba."""
    if not compiled.AVAILABLE:
        return None
    from numba.core import types
    from numba.core.extending import intrinsic

    def fence(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            builder.fence("seq_cst")
            return context.get_dummy_value()
        return types.void(), codegen
    return intrinsic(fence)


_fence: Any = _make_fence()
_yield: Any = _sched_yield if _sched_yield is not None else _fence  # (no meeting without it)


def _meet(flags: Any, index: int, aborts: Any, seen: int) -> bool:  # pragma: no cover (compiled)
    """Part ``index`` of ``flags.shape[0]`` parts running at once says it is here (what it
    wrote before is then visible to the others) and waits until every part is: True; False
    as soon as ``aborts[0]`` is no longer ``seen`` (a part failed and will not come)."""
    _fence()
    flags[index] = 1
    while True:
        _fence()  # also makes each look read the flags again
        waiting = 0
        for k in range(flags.shape[0]):
            waiting += flags[k] == 0
        if waiting == 0:
            return True
        if aborts[0] != seen:
            return False
        _yield()


meet: Any = compiled.jit(_meet)


def usable() -> bool:
    """Whether these threads can run here: Numba is installed (and not switched off by
    ``CNNUMPY_COMPILED=0``) on a POSIX system."""
    return _spin_until is not None


class _Signal:
    """A counter that one thread raises and another waits for: spinning first, then asleep."""

    def __init__(self) -> None:
        self.counter = np.zeros(1, dtype=np.int64)
        self.sleeping = False
        self.wake = threading.Semaphore(0)

    def post(self, value: int) -> None:
        self.counter[0] = value
        if self.sleeping:  # read after the write: a sleeper cannot miss this value
            self.wake.release()

    def wait(self, value: int, after: tuple[_Signal, int] | None = None) -> None:
        """Wait until the counter reaches ``value``. With ``after=(signal, v)``, first
        ``signal.post(v)``, made by the compiled code once this thread has let go of the
        interpreter lock: the thread waiting for ``signal`` then takes the lock at once,
        where a post made holding it had that thread find the lock taken and sleep (30-100
        microseconds to wake on the 2-core VMs here)."""
        post, post_value = _NO_POST, 0
        if after is not None:
            if after[0].sleeping:
                after[0].post(after[1])
            else:
                post, post_value = after[0].counter, after[1]
        ready = _spin_until(self.counter, value, SPINS, post, post_value)
        if post is not _NO_POST and after is not None and after[0].sleeping:
            after[0].wake.release()  # it fell asleep before the post: a stale release is harmless
        if ready:
            return
        self.sleeping = True  # set before the counter is read again: see post()
        try:
            while self.counter[0] < value:
                self.wake.acquire()  # a stale release only makes the loop look again
        finally:
            self.sleeping = False


class _Worker:
    """One thread running the tasks handed to it, one at a time, in order."""

    def __init__(self, run: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]) -> None:
        self.run = run
        self.go, self.done = _Signal(), _Signal()
        self.sent = 0  # tasks handed over so far
        self.task: tuple[int, Callable[[Any], Any], Sequence[Any]] | None = None  # numbered
        self.outcome: tuple[bool, Any] = (True, [])
        threading.Thread(target=self._loop, name="cnnumpy-worker", daemon=True).start()

    def _loop(self) -> None:
        self.go.wait(1)
        while True:
            assert self.task is not None
            # The latest task handed over: one whose caller was interrupted while waiting
            # (Ctrl-C) may have been replaced while it ran; that one is not wanted any more.
            number, fn, items = self.task
            try:
                self.outcome = (True, self.run(fn, items))
            except BaseException as exc:  # handed to the caller, which raises it
                ABORTS[0] += 1
                self.outcome = (False, exc)
            self.go.wait(number + 1, after=(self.done, number))  # done, then the next task

    def submit(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> None:
        self.sent += 1
        self.task = (self.sent, fn, items)  # set before the counter says it is there
        self.go.post(self.sent)

    def result(self) -> list[Any]:
        self.done.wait(self.sent)
        ok, value = self.outcome
        if not ok:
            raise value
        return value


class Pool:
    """Worker threads for one process; one caller at a time (:meth:`map` says when busy)."""

    def __init__(self, run: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]) -> None:
        self.run = run
        self.workers: list[_Worker] = []
        self.busy = threading.Lock()

    def map(self, fn: Callable[[Any], Any], runs: Sequence[Sequence[Any]]) -> list[Any] | None:
        """``fn`` over every item of ``runs`` (the calling thread takes the first run, a
        worker each other run), the results in order; None, running nothing, when another
        thread is using the pool."""
        if not self.busy.acquire(blocking=False):
            return None
        try:
            while len(self.workers) < len(runs) - 1:
                self.workers.append(_Worker(self.run))
            workers = self.workers[:len(runs) - 1]
            for worker, items in zip(workers, runs[1:], strict=True):
                worker.submit(fn, items)
            error: BaseException | None = None
            results: list[Any] = []
            try:
                results = self.run(fn, runs[0])
            except BaseException as exc:
                ABORTS[0] += 1  # before waiting: a worker may be waiting in meet() for this run
                error = exc
            for worker in workers:  # all finish before anything (an error included) goes on
                try:
                    results += worker.result()
                except BaseException as exc:
                    error = error or exc
            if error is not None:
                raise error
            return results
        finally:
            self.busy.release()


_pool: tuple[int, Pool | None] | None = None  # (process id, its pool: None where none can run)


def map_runs(fn: Callable[[Any], Any], runs: Sequence[Sequence[Any]],
             run: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]) -> list[Any] | None:
    """:meth:`Pool.map` on this process's pool, made on first use with ``run`` (a forked
    child makes its own); None, running nothing, where these threads cannot run (see
    :func:`usable`) or another thread is using them."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), Pool(run) if usable() else None)
    return None if _pool[1] is None else _pool[1].map(fn, runs)
