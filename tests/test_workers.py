"""cnnumpy.workers: threads that spin for their next task before they sleep, behind
backend.parallel_map (the tests of parallel_map itself, run both ways, are in
tests/functional/test_threading.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from cnnumpy import backend, workers
from cnnumpy.functional.fast import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")


def identity_runs(runs):
    pool = workers.Pool(lambda fn, items: [fn(item) for item in items])
    return pool, pool.map(lambda item: (item, threading.get_ident()), runs)


def test_each_run_after_the_first_goes_to_its_own_thread_results_in_order():
    pool, results = identity_runs([[0, 1], [2], [3, 4]])
    assert [item for item, _ in results] == [0, 1, 2, 3, 4]
    caller = threading.get_ident()
    threads = [ident for _, ident in results]
    assert threads[:2] == [caller] * 2
    assert len({threads[2], threads[3], caller}) == 3 and threads[3] == threads[4]
    assert len(pool.workers) == 2


@pytest.mark.parametrize("spins", [1, 10**7])
def test_a_worker_takes_tasks_asleep_or_spinning(spins, monkeypatch):
    """With 1 look the workers (and the caller, waiting) sleep between tasks; with ten
    million (seconds) a worker handed tasks in quick succession never sleeps."""
    monkeypatch.setattr(workers, "SPINS", spins)
    pool = workers.Pool(lambda fn, items: [fn(item) for item in items])
    assert pool.map(lambda item: item + 1, [[0], [1]]) == [1, 2]
    sleeps = []
    worker = pool.workers[0]
    acquire = worker.go.wake.acquire
    monkeypatch.setattr(worker.go.wake, "acquire", lambda: sleeps.append(1) or acquire())
    for k in range(20):
        if spins == 1:
            time.sleep(0.002)  # the worker is asleep by now
        assert pool.map(lambda item, k=k: item * k, [[1], [2, 3]]) == [k, 2 * k, 3 * k]
    assert (len(sleeps) > 0) == (spins == 1)


def test_an_error_in_a_worker_comes_out_after_every_run_and_the_pool_goes_on():
    pool = workers.Pool(lambda fn, items: [fn(item) for item in items])
    finished = []

    def work(item):
        if item == 1:
            raise ValueError("second run")
        time.sleep(0.05)
        finished.append(item)
        return item

    with pytest.raises(ValueError, match="second run"):
        pool.map(work, [[0], [1], [2]])
    assert sorted(finished) == [0, 2]  # the other runs finished before the error came out
    assert pool.map(lambda item: -item, [[1], [2], [3]]) == [-1, -2, -3]


def test_a_second_caller_while_the_pool_is_busy_gets_none_then_parallel_map_still_works():
    backend.set_num_threads(2)
    try:
        assert backend.parallel_map(lambda item: item, [1, 2]) == [1, 2]  # makes the pool
        pool = workers._pool[1]
        inside, leave = threading.Event(), threading.Event()

        def hold(item):
            if item == 0:
                inside.set()
                leave.wait(10)
            return item

        first = []
        holder = threading.Thread(target=lambda: first.append(pool.map(hold, [[0], [1]])))
        holder.start()
        assert inside.wait(10)
        assert pool.map(hold, [[5], [6]]) is None  # busy: nothing ran
        assert backend.parallel_map(lambda item: item * 2, [5, 6, 7]) == [10, 12, 14]
        leave.set()
        holder.join(10)
        assert first == [[0, 1]]
    finally:
        backend.set_num_threads(None)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")
def test_a_forked_child_makes_its_own_workers():
    backend.set_num_threads(2)
    try:
        assert backend.parallel_map(lambda item: item + 1, [1, 2]) == [2, 3]  # parent's threads
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's worker threads do not exist here
            try:
                ok = backend.parallel_map(lambda item: item * 3, [1, 2, 3]) == [3, 6, 9]
                os.write(write, b"ok" if ok else b"wrong")
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 10)
        os.waitpid(pid, 0)
        assert answer == b"ok"
    finally:
        backend.set_num_threads(None)


def test_a_worker_left_running_by_an_interrupted_caller_takes_the_next_task():
    """A caller interrupted while it waits (Ctrl-C in a notebook) leaves its worker running;
    the next task handed over meanwhile is the one that worker runs next, not lost."""
    pool = workers.Pool(lambda fn, items: [fn(item) for item in items])
    assert pool.map(lambda item: item, [[0], [1]]) == [0, 1]
    worker, release = pool.workers[0], threading.Event()
    worker.submit(lambda item: release.wait(10) and item, [1])  # nobody waits for this one
    time.sleep(0.05)
    worker.submit(lambda item: item * 10, [2])
    release.set()
    results: list = []
    waiter = threading.Thread(target=lambda: results.append(worker.result()), daemon=True)
    waiter.start()
    waiter.join(10)
    assert results == [[20]]


@pytest.mark.parametrize("spins", [1, 10**7])
def test_wait_after_posts_the_other_signal_first_asleep_or_spinning(spins, monkeypatch):
    """``go.wait(v, after=(done, k))`` posts ``k`` to ``done`` before it waits: a thread
    waiting for ``done`` goes on, whether it sleeps (one look) or spins."""
    monkeypatch.setattr(workers, "SPINS", spins)
    go, done = workers._Signal(), workers._Signal()
    seen = []
    waiter = threading.Thread(target=lambda: (done.wait(1), seen.append(int(done.counter[0]))))
    waiter.start()
    time.sleep(0.05)
    assert done.sleeping == (spins == 1)
    poster = threading.Thread(target=go.wait, args=(1,), kwargs={"after": (done, 1)})
    poster.start()
    waiter.join(5)
    assert seen == [1]
    go.post(1)
    poster.join(5)
    assert not poster.is_alive() and not waiter.is_alive()


def test_the_spin_kernel_is_found_in_the_disk_cache_by_the_next_process(tmp_path):
    """Regression: defined in a closure, the kernel was compiled again, and one more cache
    file written beside the package, by every process that used the threads."""
    code = ("import numpy as np; from cnnumpy import workers; "
            "workers._spin_until(np.ones(1, np.int64), 0, 1, workers._NO_POST, 0); "
            "print(sum(workers._spin_until.stats.cache_hits.values()))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    hits = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.strip() for _ in range(2)]
    assert hits == ["0", "1"]
    assert len(list(tmp_path.rglob("*.nbc"))) == 1


def _meeting(threads, fail=None, delay=0.01):
    """``backend.run_together`` over ``threads`` parts: each writes its number, meets the
    others and adds up every part's number (-1 where it stopped waiting); parts after the
    first start ``delay`` seconds late, part ``fail`` raises instead of meeting."""
    import numba
    import numpy as np

    @numba.njit(nogil=True)
    def write_meet_add(values, k, flags, aborts, seen, out):
        values[k] = k + 1
        met = workers.meet(flags, k, aborts, seen)
        out[k] = values.sum() if met else -1
        return met

    values, flags, out = (np.zeros(threads, np.int64) for _ in range(3))
    seen = int(workers.ABORTS[0])

    def part(k):
        if k > 0:
            time.sleep(delay)
        if k == fail:
            raise ValueError(f"part {k}")
        return write_meet_add(values, k, flags, workers.ABORTS, seen, out)

    return lambda: backend.run_together(part, threads), out


@pytest.mark.parametrize("threads", [2, 3])
def test_parts_run_together_wait_for_each_other_in_meet(threads):
    """The first part (the caller's) starts 10 ms before the others: without waiting for
    them it would add up its own number only."""
    backend.set_num_threads(threads)
    try:
        run, out = _meeting(threads)
        assert run() == [True] * threads
        assert out.tolist() == [threads * (threads + 1) // 2] * threads
    finally:
        backend.set_num_threads(None)


@pytest.mark.parametrize("fail", [0, 1])
def test_a_part_that_fails_before_meeting_lets_the_others_go_and_its_error_comes_out(fail):
    """The caller's part (0) or a worker's (1) raises; the parts waiting for it stop waiting
    (instead of spinning for ever), and the error comes out of run_together."""
    backend.set_num_threads(3)
    try:
        run, out = _meeting(3, fail=fail)
        errors = []

        def call():
            try:
                run()
            except ValueError as exc:
                errors.append(str(exc))

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(20)
        assert not caller.is_alive() and errors == [f"part {fail}"]
        assert [out[k] for k in range(3) if k != fail] == [-1, -1]
        run, out = _meeting(3)  # the pool goes on
        assert run() == [True] * 3 and out.tolist() == [6] * 3
    finally:
        backend.set_num_threads(None)


def test_run_together_calls_nothing_where_it_cannot_promise_the_parts_run_at_once():
    calls = []
    backend.set_num_threads(1)
    try:
        assert backend.run_together(calls.append, 2) is None  # one thread
        backend.set_num_threads(2)
        assert backend.run_together(calls.append, 1) is None  # one part
        assert backend.parallel_map(lambda item: item, [1, 2]) == [1, 2]  # makes the pool
        pool = workers._pool[1]
        assert pool.busy.acquire(blocking=False)  # another thread is using the pool
        try:
            assert backend.run_together(calls.append, 2) is None
        finally:
            pool.busy.release()
        assert calls == []
        assert backend.run_together(lambda k: k * 10, 2) == [0, 10]
    finally:
        backend.set_num_threads(None)
