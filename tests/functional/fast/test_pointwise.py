"""1x1 convolutions as matrix products against the im2col path and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import pointwise

CASES = [  # x shape, filters, strides, padding, bias, relu
    ((3, 6, 5, 4), 7, (1, 1), "valid", True, False),
    ((2, 7, 7, 3), 5, (2, 2), "valid", False, True),
    ((2, 8, 5, 6), 4, (1, 2), "same", True, True),
    ((1, 5, 9, 2), 3, (2, 1), 0, False, False),
    ((4, 4, 4, 33), 9, (3, 3), "same", True, True),
]


def run(x, kernel, bias, strides, padding, relu, dy, need_dx=True):
    y, cache = conv.conv2d_forward(x, kernel, bias, strides, padding, relu=relu)
    return (y, *conv.conv2d_backward(dy, cache, need_dx))


def arrays(x_shape, filters, strides, bias, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((1, 1, x_shape[3], filters)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if bias else None
    out_hw = [-(-x_shape[1 + a] // strides[a]) for a in (0, 1)]
    dy = rng.standard_normal((x_shape[0], *out_hw, filters)).astype(dtype)
    return x, kernel, b, dy


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk_bytes", [700, 2**22])
def test_equals_the_im2col_path(case, dtype, tol, chunk_bytes, monkeypatch):
    x_shape, filters, strides, padding, bias, relu = case
    x, kernel, b, dy = arrays(x_shape, filters, strides, bias, dtype)
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk_bytes)  # 700: many chunks, on the threads
    fast = run(x, kernel, b, strides, padding, relu, dy)
    monkeypatch.setattr(pointwise, "ENABLED", False)
    reference = run(x, kernel, b, strides, padding, relu, dy)
    for got, want in zip(fast, reference, strict=True):
        if want is None:
            assert got is None
            continue
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_gathers_no_patches_and_skips_dx_on_request(monkeypatch):
    def no_gathering(*args, **kwargs):
        raise AssertionError("a 1x1 convolution gathered patches")

    monkeypatch.setattr(conv, "_patches", no_gathering)
    for strides in [(1, 1), (2, 2)]:
        x, kernel, b, dy = arrays((2, 6, 6, 5), 3, strides, True, np.float64)
        y, dx, dkernel, dbias = run(x, kernel, b, strides, "same", True, dy, need_dx=False)
        assert dx is None and dkernel.shape == kernel.shape and dbias.shape == (3,)


def test_same_results_on_one_thread_and_on_several(monkeypatch):
    monkeypatch.setattr(conv, "CHUNK_BYTES", 500)
    x, kernel, b, dy = arrays((8, 5, 5, 6), 4, (1, 1), True, np.float32)
    backend.set_num_threads(1)
    try:
        one = run(x, kernel, b, (1, 1), "valid", True, dy)
    finally:
        backend.set_num_threads(None)
    several = run(x, kernel, b, (1, 1), "valid", True, dy)
    for a, c in zip(one, several, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_a_batch_of_one_chunk_is_split_over_the_threads(monkeypatch, strides):
    x, kernel, b, dy = arrays((5, 6, 6, 4), 3, strides, True, np.float64)
    monkeypatch.setattr(backend, "get_num_threads", lambda: 2)
    seen = []
    parallel_map = backend.parallel_map

    def counting(fn, items):
        seen.append(len(items))
        return parallel_map(fn, items)

    monkeypatch.setattr(backend, "parallel_map", counting)
    monkeypatch.setattr(conv, "SPLIT_MIN_BYTES", 1)
    split = run(x, kernel, b, strides, "valid", False, dy)
    assert seen == [2, 2]  # forward and backward, one chunk per thread
    monkeypatch.setattr(conv, "SPLIT_MIN_BYTES", 2**40)
    seen.clear()
    whole = run(x, kernel, b, strides, "valid", False, dy)
    assert seen == [1, 1]
    for got, want in zip(split, whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_padded_or_grouped_1x1_goes_by_im2col():
    assert pointwise.applies((1, 1, 4, 8), ((0, 0), (0, 0)), 1)
    assert not pointwise.applies((1, 1, 4, 8), ((1, 0), (0, 0)), 1)
    assert not pointwise.applies((1, 1, 2, 8), ((0, 0), (0, 0)), 2)
    assert not pointwise.applies((1, 3, 4, 8), ((0, 0), (0, 0)), 1)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES)
def test_matches_pytorch(case, dtype, tol):
    torch = pytest.importorskip("torch")
    x_shape, filters, strides, padding, bias, relu = case
    x, kernel, b, dy = arrays(x_shape, filters, strides, bias, dtype, seed=1)
    y, dx, dkernel, dbias = run(x, kernel, b, strides, padding, relu, dy)

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    xt = torch.tensor(nhwc_to_nchw(x), dtype=tdtype, requires_grad=True)
    wt = torch.tensor(hwio_to_oihw(kernel), dtype=tdtype, requires_grad=True)
    bt = torch.tensor(b, dtype=tdtype, requires_grad=True) if bias else None
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=strides)
    if relu:
        yt = torch.relu(yt)
    yt.backward(torch.tensor(nhwc_to_nchw(dy), dtype=tdtype))
    close = dict(rtol=tol, atol=tol)
    np.testing.assert_allclose(y, nchw_to_nhwc(yt.detach().numpy()), **close)
    np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), **close)
    np.testing.assert_allclose(dkernel, oihw_to_hwio(wt.grad.numpy()), **close)
    if bias:
        np.testing.assert_allclose(dbias, bt.grad.numpy(), **close)
