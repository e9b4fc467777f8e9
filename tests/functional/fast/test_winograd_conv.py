"""The plain 3x3 convolution by Winograd F(4x4, 3x3) and F(2x2, 3x3) against im2col and the
naive loops, with the compiled transforms and with their NumPy fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled, winograd_conv
from tests.functional.test_conv import naive_conv2d, naive_conv2d_backward

# (N, H, W, C), filters, padding: even and odd outputs, asymmetric and no padding
CASES = [
    ((2, 8, 8, 16), 16, "same"),
    ((3, 7, 7, 16), 24, "same"),
    ((2, 6, 9, 20), 16, "valid"),
    ((1, 5, 6, 16), 16, ((2, 0), (1, 3))),
    ((2, 3, 3, 16), 16, "valid"),  # a single output
]


@pytest.fixture(autouse=True, params=[4, 2], ids=["F4x4", "F2x2"])
def tile(request, monkeypatch):
    """Every test for both tile sizes."""
    monkeypatch.setattr(winograd_conv, "TILE", request.param)
    return request.param


def _run(x, kernel, bias, padding, relu, dy, need_dx=True):
    y, cache = conv.conv2d_forward(x, kernel, bias, 1, padding, relu=relu)
    return (y, *conv.conv2d_backward(dy(y.shape), cache, need_dx))


@pytest.mark.parametrize("use_compiled", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, filters, padding", CASES)
def test_equals_im2col_forward_and_backward(monkeypatch, shape, filters, padding, relu,
                                            use_compiled):
    monkeypatch.setattr(compiled, "ENABLED", use_compiled and compiled.AVAILABLE)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((3, 3, shape[3], filters))
    bias = rng.standard_normal(filters)
    grads = {}
    dy = lambda s: np.random.default_rng(1).standard_normal(s)  # noqa: E731
    for fast in (True, False):
        monkeypatch.setattr(winograd_conv, "ENABLED", fast)
        assert winograd_conv.applies(kernel.shape, (1, 1), (1, 1), 1) is fast
        grads[fast] = _run(x, kernel, bias, padding, relu, dy)
    for got, want in zip(grads[True], grads[False], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_matches_the_naive_convolution():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 8, 16))
    kernel = rng.standard_normal((3, 3, 16, 16))
    bias = rng.standard_normal(16)
    pads = ((1, 1), (1, 1))
    y, cache = conv.conv2d_forward(x, kernel, bias, 1, pads)
    np.testing.assert_allclose(y, naive_conv2d(x, kernel, bias, (1, 1), pads, (1, 1), 1),
                               rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx, dk, db = conv.conv2d_backward(dy, cache)
    want = naive_conv2d_backward(dy, x, kernel, (1, 1), pads, (1, 1), 1)
    for got, ref in zip((dx, dk), want[:2], strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)))


def test_float32_stays_float32_and_close():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 10, 10, 32)).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, 32, 16)) * 0.1).astype(np.float32)
    y, cache = conv.conv2d_forward(x, kernel, None, 1, "same")
    dx, dk, _ = conv.conv2d_backward(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == dk.dtype == np.float32
    want = naive_conv2d(x.astype(np.float64), kernel.astype(np.float64), None, (1, 1),
                        ((1, 1), (1, 1)), (1, 1), 1)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_skips_the_input_gradient_when_not_needed(monkeypatch):
    rng = np.random.default_rng(4)
    x, kernel = rng.standard_normal((2, 6, 6, 16)), rng.standard_normal((3, 3, 16, 16))
    ones = np.ones
    dx, dk, db = _run(x, kernel, None, "same", False, ones, need_dx=False)[1:]
    assert dx is None and db is None
    monkeypatch.setattr(winograd_conv, "ENABLED", False)
    np.testing.assert_allclose(dk, _run(x, kernel, None, "same", False, ones)[2], rtol=1e-10)


@pytest.mark.parametrize("kernel_shape, strides, dilation, groups, expected", [
    ((3, 3, 16, 16), (1, 1), (1, 1), 1, True),
    ((3, 3, 8, 16), (1, 1), (1, 1), 1, False),  # too few input channels
    ((3, 3, 16, 8), (1, 1), (1, 1), 1, False),  # too few filters
    ((3, 3, 16, 16), (2, 2), (1, 1), 1, False),
    ((3, 3, 16, 16), (1, 1), (2, 2), 1, False),
    ((3, 3, 8, 16), (1, 1), (1, 1), 2, False),
    ((5, 5, 16, 16), (1, 1), (1, 1), 1, False),
])
def test_applies_only_to_plain_3x3_stride_1(kernel_shape, strides, dilation, groups, expected):
    assert winograd_conv.applies(kernel_shape, strides, dilation, groups) is expected


@pytest.mark.parametrize("hw", [(4, 6), (5, 7), (1, 3), (8, 9)])
def test_compiled_output_transforms_equal_numpy(monkeypatch, hw, tile):
    rng = np.random.default_rng(5)
    n, f = 2, 16
    tiles = n * -(-hw[0] // tile) * -(-hw[1] // tile)
    m = rng.standard_normal(((tile + 2)**2, tiles, f)).astype(np.float32)
    dy = rng.standard_normal((n, *hw, f)).astype(np.float32)
    results = {}
    for use_compiled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", use_compiled)
        y = np.full((n, *hw, f), np.nan, dtype=np.float32)
        winograd_conv._write_output(m, y, None, False)
        results[use_compiled] = (y, winograd_conv._output_adjoint(dy).copy())  # may be scratch
    tol = {"rtol": 1e-6, "atol": 1e-5}  # the same sums, maybe in another order
    np.testing.assert_allclose(results[True][0], results[False][0], **tol)
    np.testing.assert_allclose(results[True][1], results[False][1], **tol)
    assert not np.isnan(results[True][0]).any()
