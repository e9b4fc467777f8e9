"""The compiled backward pass of a convolution before max pooling against the naive loop
references and the NumPy path it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled, compiled_conv_pool, conv_pool

from ..test_conv import naive_conv2d, naive_conv2d_backward
from ..test_pooling import naive_pool

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")

CASES = [  # batch, height, width, channels, filters, kernel, pool, padding, bias
    (3, 11, 10, 8, 16, (3, 3), (2, 2), "valid", True),  # rows and columns outside every window
    (2, 9, 12, 5, 3, (5, 5), (2, 2), "same", True),
    (2, 10, 9, 4, 6, (3, 2), (2, 3), ((2, 0), (1, 3)), False),
    (1, 8, 8, 1, 4, (1, 1), (3, 3), 1, True),
    (4, 7, 13, 8, 7, (4, 3), (3, 1), "same", False),
]


def _case(n, h, w, c, f, kernel_hw, pool, padding, with_bias, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    kernel = rng.standard_normal((*kernel_hw, c, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype) if with_bias else None
    pads = conv.resolve_padding(padding, (h, w), kernel_hw, (1, 1), (1, 1))
    conv_hw = (h + sum(pads[0]) - kernel_hw[0] + 1, w + sum(pads[1]) - kernel_hw[1] + 1)
    dy = rng.standard_normal((n, conv_hw[0] // pool[0], conv_hw[1] // pool[1], f)).astype(dtype)
    return x, kernel, bias, pads, dy


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_the_naive_convolution_and_pool(case, monkeypatch):
    monkeypatch.setattr(conv_pool, "WINDOW_PATCHES", False)  # the window-order forward pass
    x, kernel, bias, pads, dy = _case(*case)
    pool, padding = case[6], case[7]
    z = naive_conv2d(x, kernel, bias, (1, 1), pads, (1, 1), 1)
    _, dz = naive_pool(z, dy, pool, pool, "valid", "max")
    dx_ref, dk_ref, db_ref = naive_conv2d_backward(dz, x, kernel, (1, 1), pads, (1, 1), 1)
    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, padding, 1, pool)
    assert compiled_conv_pool.applies(x, kernel, cache.strides, cache.dilation)
    dx, dk, db = conv_pool.conv2d_maxpool_backward(dy, cache)
    for got, want in ((dx, dx_ref), (dk, dk_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if bias is None:
        assert db is None
    else:
        np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)
    no_dx, dk_only, _ = conv_pool.conv2d_maxpool_backward(dy, cache, need_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(dk_only, dk)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_numpy(case, dtype, tol, monkeypatch):
    """Sums in another order: equal up to rounding, in the input's dtype."""
    monkeypatch.setattr(conv_pool, "WINDOW_PATCHES", False)
    x, kernel, bias, _, dy = _case(*case, dtype=dtype, seed=1)
    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, case[7], 1, case[6])
    got = conv_pool.conv2d_maxpool_backward(dy, cache)
    monkeypatch.setattr(compiled_conv_pool, "MAX_CHANNELS", 0)
    want = conv_pool.conv2d_maxpool_backward(dy, cache)
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None
        else:
            assert a.dtype == np.dtype(dtype)
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_same_results_on_one_thread_and_on_several(monkeypatch):
    """Each image's input gradient is computed alone: the same to the bit; the kernel's
    gradient sums the threads' parts in order, up to rounding."""
    monkeypatch.setattr(compiled_conv_pool, "MIN_IMAGES_PER_THREAD", 4)
    calls = []
    real = backend.parallel_map
    monkeypatch.setattr(backend, "parallel_map", lambda fn, items: calls.append(len(items))
                        or real(fn, items))
    x, kernel, bias, pads, dy = _case(40, 12, 11, 8, 16, (3, 3), (2, 2), "same", True,
                                      dtype=np.float32, seed=2)
    results = []
    for threads in (1, 2, 3):
        backend.set_num_threads(threads)
        try:
            _, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "same", 1, 2)
            calls.clear()
            results.append(conv_pool.conv2d_maxpool_backward(dy, cache))
            assert calls == [threads]  # the backward pass's slices of the batch
        finally:
            backend.set_num_threads(None)
    for dx, dk, db in results[1:]:
        np.testing.assert_array_equal(dx, results[0][0])
        np.testing.assert_allclose(dk, results[0][1], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(db, results[0][2], rtol=1e-5, atol=1e-4)


def test_not_used_where_it_does_not_apply(monkeypatch):
    kernel = np.zeros((3, 3, 8, 4), dtype=np.float32)
    x = np.zeros((2, 8, 8, 8), dtype=np.float32)
    assert compiled_conv_pool.applies(x, kernel, (1, 1), (1, 1))
    assert not compiled_conv_pool.applies(x, kernel, (2, 1), (1, 1))
    assert not compiled_conv_pool.applies(x, kernel, (1, 1), (1, 2))
    wide = np.zeros((3, 3, 9, 4), dtype=np.float32)
    assert not compiled_conv_pool.applies(np.zeros((2, 8, 8, 9), np.float32), wide, (1, 1),
                                          (1, 1))
    monkeypatch.setattr(compiled, "ENABLED", False)
    assert not compiled_conv_pool.applies(x, kernel, (1, 1), (1, 1))
