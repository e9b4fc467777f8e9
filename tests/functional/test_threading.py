"""The library's own threads: the setting, parallel_map, the BLAS limit, and kernels that give
the same results on one thread as on several."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from cnnumpy import backend
from cnnumpy.functional import conv, pooling
from cnnumpy.functional.fast import compiled
from cnnumpy.optimizers import packing

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(autouse=True)
def restore_threads():
    yield
    backend.set_num_threads(None)


def _blas_threads():
    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    return [lib.get_num_threads() for lib in blas.lib_controllers]


def test_the_thread_setting_holds_the_blas_too():
    """One thread means one: the BLAS's products too (two processes set to one thread each ran
    a second BLAS thread each on two cores: ResNet-20 trained 2.7x slower, and 4-5x slower
    under ``mpirun --bind-to none -n 2``); never more than the BLAS had; its own counts back
    with the default."""
    own = _blas_threads()
    backend.set_num_threads(1)
    assert _blas_threads() == [1] * len(own)
    backend.set_num_threads(max(own) + 4)
    assert _blas_threads() == own
    backend.set_num_threads(1)
    backend.set_num_threads(None)
    assert _blas_threads() == own


def test_a_thread_setting_inside_a_single_threaded_block_holds_after_it():
    own = _blas_threads()
    backend.set_num_threads(2)
    with backend.single_threaded_blas():
        backend.set_num_threads(1)
    assert _blas_threads() == [1] * len(own)
    backend.set_num_threads(None)
    assert _blas_threads() == own


@pytest.fixture(params=["spinning workers", "executor"])
def workers(request, monkeypatch):
    """parallel_map's threads: cnnumpy.workers' spinning ones (where Numba is), or the
    ThreadPoolExecutor that runs where they cannot."""
    from cnnumpy import workers

    if request.param == "spinning workers":
        if not compiled.AVAILABLE:
            pytest.skip("Numba is not installed")
        assert workers.usable()
    else:
        monkeypatch.setattr(workers, "_pool", (os.getpid(), None))
    return request.param


def blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_default_is_the_cpus_this_process_may_use():
    backend.set_num_threads(3)
    assert backend.get_num_threads() == 3
    backend.set_num_threads(None)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert backend.get_num_threads() == expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values_quoting_them(bad):
    with pytest.raises(ValueError, match=f"n={bad!r}"):
        backend.set_num_threads(bad)


def test_parallel_map_runs_items_concurrently_in_order_with_blas_at_one_thread(workers):
    backend.set_num_threads(2)
    before = blas_threads()
    both_running = threading.Barrier(2, timeout=10)  # breaks unless two items run at once
    seen = []

    def work(item):
        both_running.wait()
        seen.append(blas_threads())
        return item * 10

    assert backend.parallel_map(work, [1, 2, 3, 4]) == [10, 20, 30, 40]
    assert all(all(n == 1 for n in counts) for counts in seen)
    assert blas_threads() == before  # given back afterwards


def test_the_caller_runs_the_first_run_and_waits_for_the_others_on_an_error(workers):
    backend.set_num_threads(2)
    caller = threading.get_ident()
    ids = backend.parallel_map(lambda _: threading.get_ident(), range(4))
    assert ids[:2] == [caller] * 2 and caller not in ids[2:]  # one hand-off, not two
    finished = []

    def work(item):
        if item == 0:
            raise ValueError("first run")
        time.sleep(0.05)
        finished.append(item)

    with pytest.raises(ValueError, match="first run"):
        backend.parallel_map(work, [0, 1])
    assert finished == [1]  # nothing still writes once the error has come out


def test_one_thread_runs_everything_in_the_caller():
    backend.set_num_threads(1)
    caller = threading.get_ident()
    assert backend.parallel_map(lambda _: threading.get_ident(), range(4)) == [caller] * 4


def test_nested_parallel_map_runs_serially_inside_a_worker(workers):
    backend.set_num_threads(2)
    inner_threads = []

    def inner(_):
        return threading.get_ident()

    def outer(item):
        ids = backend.parallel_map(inner, range(3))
        inner_threads.append(set(ids) == {threading.get_ident()})
        return item

    assert backend.parallel_map(outer, range(4)) == list(range(4))
    assert inner_threads == [True] * 4


def test_without_threadpoolctl_the_kernels_run_serially(monkeypatch):
    backend.set_num_threads(2)
    monkeypatch.setattr(backend, "_blas", False)  # as if threadpoolctl could not be imported
    caller = threading.get_ident()
    assert not backend.threads_usable()
    assert backend.parallel_map(lambda _: threading.get_ident(), range(3)) == [caller] * 3


def test_single_threaded_blas_nests_and_restores():
    backend.set_num_threads(2)
    before = blas_threads()
    with backend.single_threaded_blas():
        with backend.single_threaded_blas():
            assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before


# ----- kernels: several threads give what one thread gives -------------------------------------


def run_conv(x, kernel, bias, strides, padding, dilation, dy):
    y, cache = conv.conv2d_forward(x, kernel, bias, strides, padding, dilation)
    return (y, *conv.conv2d_backward(dy, cache))


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("seed", range(8))
def test_conv_on_two_threads_equals_one_thread(seed, dtype, tol, monkeypatch):
    monkeypatch.setattr(conv, "CHUNK_BYTES", 2000)  # several chunks even for small images
    rng = np.random.default_rng(seed)
    c, f, kh, kw = (int(v) for v in rng.integers(1, [6, 6, 5, 5], endpoint=True))
    x = rng.standard_normal((int(rng.integers(2, 9)), int(rng.integers(5, 11)),
                             int(rng.integers(5, 11)), c)).astype(dtype)
    kernel = rng.standard_normal((kh, kw, c, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    strides = [1, (1, 2), 2][seed % 3]
    padding = ["same", "valid", ((2, 0), (1, 3))][seed % 3]
    dilation = [1, 1, (2, 1)][seed % 3]
    y, _ = conv.conv2d_forward(x, kernel, bias, strides, padding, dilation)
    dy = rng.standard_normal(y.shape).astype(dtype)
    results = {}
    for threads in (1, 2):
        backend.set_num_threads(threads)
        results[threads] = run_conv(x, kernel, bias, strides, padding, dilation, dy)
    for one, two in zip(results[1], results[2], strict=True):
        assert one.dtype == two.dtype == dtype
        np.testing.assert_allclose(two, one, rtol=tol, atol=tol * np.abs(one).max())


def test_a_batch_of_one_chunk_is_cut_per_thread_from_split_min_bytes_on(monkeypatch):
    """A batch whose patches fit one chunk ran on the calling thread alone (LeNet-like and
    CIFAR-like first convolutions at batch 32, the prototype's model at 64): from
    conv.SPLIT_MIN_BYTES on it gets one chunk per thread, below that one chunk."""
    monkeypatch.setattr(backend, "get_num_threads", lambda: 2)
    per_image = conv.SPLIT_MIN_BYTES // 32
    assert conv._chunks(32, per_image) == [slice(0, 16), slice(16, 32)]
    assert conv._chunks(31, per_image) == [slice(0, 31)]
    assert conv._chunks(1, conv.SPLIT_MIN_BYTES) == [slice(0, 1)]  # one image stays whole
    monkeypatch.setattr(backend, "get_num_threads", lambda: 1)
    assert conv._chunks(32, per_image) == [slice(0, 32)]


@pytest.mark.parametrize("pool, strides, padding", [
    (2, 2, "valid"), (3, 2, "same"), ((2, 3), (2, 3), "same"), (3, 1, "valid")])
def test_max_pool_on_two_threads_equals_one_thread_exactly(pool, strides, padding, monkeypatch):
    monkeypatch.setattr(pooling, "PARALLEL_MIN_SIZE", 0)  # split even tiny batches
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((5, 9, 8, 3)), 0).astype(np.float32)  # ties at 0
    results = {}
    for threads in (1, 2):
        backend.set_num_threads(threads)
        y, cache = pooling.max_pool2d_forward(x, pool, strides, padding)
        results[threads] = y, pooling.max_pool2d_backward(np.ones_like(y), cache)
    for one, two in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(two, one)


@pytest.mark.parametrize("amsgrad, weight_decay, decoupled",
                         [(False, 0.0, False), (True, 0.01, False), (False, 0.01, True)])
def test_adam_on_two_threads_equals_one_thread_exactly(amsgrad, weight_decay, decoupled,
                                                       monkeypatch):
    from cnnumpy.optimizers import adam_update

    monkeypatch.setattr(packing, "ELEMENTWISE_PARALLEL_MIN", 1)
    rng = np.random.default_rng(7)
    shapes = [(5, 5, 3, 8), (8,), (301, 17), (17,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    results = {}
    for threads in (1, 2):
        backend.set_num_threads(threads)
        params = [p.copy() for p in start]
        m = [np.full(s, 0.1, np.float32) for s in shapes]
        v = [np.full(s, 0.2, np.float32) for s in shapes]
        vmax = [np.full(s, 0.3, np.float32) for s in shapes] if amsgrad else None
        for step in (1, 2):
            adam_update(params, grads, m, v, step=step, lr=1e-3, beta1=0.9, beta2=0.999,
                        eps=1e-7, weight_decay=weight_decay, decoupled=decoupled,
                        max_exp_avg_sqs=vmax)
        results[threads] = params + m + v + (vmax or [])
    assert all(np.array_equal(a, b) for a, b in zip(results[1], results[2], strict=True))
    assert not np.array_equal(results[1][0], start[0])


def test_dense_backward_on_two_threads_equals_one_thread_exactly(monkeypatch):
    from cnnumpy.layers import core

    monkeypatch.setattr(core, "CONCURRENT_BACKWARD_MIN", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((17, 300)).astype(np.float32)
    dy = rng.standard_normal((17, 40)).astype(np.float32)
    kernel = rng.standard_normal((300, 40)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        backend.set_num_threads(threads)
        layer = core.Dense(40, input_shape=(300,))
        layer.build((300,))
        layer.params["kernel"] = kernel.copy()
        layer.forward(x, training=True)
        dx = layer.backward(dy)
        results[threads] = (dx, layer.grads["kernel"], layer.grads["bias"])
    for a, b in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(results[2][0], dy @ kernel.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[2][1], x.T @ dy, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [2, 17, 64])
def test_dense_forward_on_two_threads_matches_one_thread(batch, monkeypatch):
    """Each half of the batch is one product, as one thread computes it: equal within rounding
    (OpenBLAS may pick another kernel for fewer rows)."""
    from cnnumpy.layers import core

    monkeypatch.setattr(core, "CONCURRENT_FORWARD_MIN", 1)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, 300)).astype(np.float32)
    kernel = rng.standard_normal((300, 40)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        backend.set_num_threads(threads)
        layer = core.Dense(40, activation="relu", input_shape=(300,))
        layer.build((300,))
        layer.params["kernel"] = kernel.copy()
        layer.params["bias"] = np.linspace(-1, 1, 40, dtype=np.float32)
        results[threads] = layer.forward(x, training=True)
    np.testing.assert_allclose(results[2], results[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results[2], np.maximum(x @ kernel + layer.params["bias"], 0),
                               rtol=1e-5, atol=1e-5)
