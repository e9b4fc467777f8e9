"""The direct depthwise convolution against the grouped im2col path and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import depthwise

CASES = [  # x shape, kernel (kh, kw), multiplier, strides, padding, dilation, bias, relu
    ((3, 7, 6, 4), (3, 3), 1, (1, 1), "same", (1, 1), True, True),
    ((2, 9, 8, 5), (3, 3), 1, (2, 2), "same", (1, 1), False, False),
    ((2, 8, 9, 3), (3, 2), 2, (1, 2), "valid", (1, 1), True, False),
    ((1, 9, 9, 2), (2, 3), 3, (2, 1), ((1, 2), (0, 1)), (2, 1), False, True),
    ((4, 6, 6, 6), (5, 5), 1, (1, 1), 2, (1, 1), True, True),
    ((2, 5, 5, 3), (1, 1), 2, (1, 1), "valid", (1, 1), True, False),
]


def arrays(case, dtype, seed=0):
    x_shape, (kh, kw), m, strides, padding, dilation, bias, _ = case
    rng = np.random.default_rng(seed)
    c = x_shape[3]
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((kh, kw, 1, c * m)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype) if bias else None
    return x, kernel, b


def run(x, kernel, b, case, seed=1, need_dx=True):
    _, _, _, strides, padding, dilation, _, relu = case
    y, cache = conv.conv2d_forward(x, kernel, b, strides, padding, dilation,
                                   groups=x.shape[3], relu=relu)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    return (y, dy, *conv.conv2d_backward(dy, cache, need_dx))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk_bytes", [300, 2**19])
@pytest.mark.parametrize("einsum_min_channels", [1, 1000])
def test_equals_the_grouped_im2col_path(case, dtype, tol, chunk_bytes, einsum_min_channels,
                                        monkeypatch):
    x, kernel, b = arrays(case, dtype)
    monkeypatch.setattr(depthwise, "CHUNK_BYTES", chunk_bytes)  # 300: one image per chunk
    monkeypatch.setattr(depthwise, "EINSUM_MIN_CHANNELS", einsum_min_channels)  # both ways
    direct = run(x, kernel, b, case)
    monkeypatch.setattr(depthwise, "ENABLED", False)
    reference = run(x, kernel, b, case)
    for got, want in zip(direct, reference, strict=True):
        if want is None:
            assert got is None
            continue
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_gathers_no_patches_and_skips_dx_on_request(monkeypatch):
    def no_gathering(*args, **kwargs):
        raise AssertionError("a depthwise convolution gathered patches")

    monkeypatch.setattr(conv, "conv_grouped", no_gathering)
    case = CASES[0]
    x, kernel, b = arrays(case, np.float64)
    y, dy, dx, dkernel, dbias = run(x, kernel, b, case, need_dx=False)
    assert dx is None and dkernel.shape == kernel.shape and dbias.shape == b.shape


def test_same_results_on_one_thread_and_on_several(monkeypatch):
    monkeypatch.setattr(depthwise, "CHUNK_BYTES", 1000)
    case = CASES[1]
    x, kernel, b = arrays(case, np.float32)
    backend.set_num_threads(1)
    try:
        one = run(x, kernel, b, case)
    finally:
        backend.set_num_threads(None)
    for a, c in zip(one, run(x, kernel, b, case), strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, c)


def test_only_one_channel_per_group_goes_this_way():
    assert depthwise.applies((3, 3, 1, 8), 8) and depthwise.applies((3, 3, 1, 16), 8)
    assert not depthwise.applies((3, 3, 2, 8), 4)
    assert not depthwise.applies((3, 3, 1, 8), 1)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES)
def test_matches_pytorch(case, dtype, tol):
    torch = pytest.importorskip("torch")
    x_shape, _, _, strides, padding, dilation, bias, relu = case
    x, kernel, b = arrays(case, dtype, seed=2)
    y, dy, dx, dkernel, dbias = run(x, kernel, b, case)
    (top, bottom), (left, right) = conv.resolve_padding(padding, x_shape[1:3], kernel.shape[:2],
                                                        strides, dilation)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    xt = torch.tensor(nhwc_to_nchw(x), dtype=tdtype, requires_grad=True)
    wt = torch.tensor(hwio_to_oihw(kernel), dtype=tdtype, requires_grad=True)
    bt = torch.tensor(b, dtype=tdtype, requires_grad=True) if bias else None
    padded = torch.nn.functional.pad(xt, (left, right, top, bottom))
    yt = torch.nn.functional.conv2d(padded, wt, bt, stride=strides, dilation=dilation,
                                    groups=x_shape[3])
    if relu:
        yt = torch.relu(yt)
    yt.backward(torch.tensor(nhwc_to_nchw(dy), dtype=tdtype))
    close = dict(rtol=tol, atol=tol)
    np.testing.assert_allclose(y, nchw_to_nhwc(yt.detach().numpy()), **close)
    np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), **close)
    np.testing.assert_allclose(dkernel, oihw_to_hwio(wt.grad.numpy()), **close)
    if bias:
        np.testing.assert_allclose(dbias, bt.grad.numpy(), **close)
