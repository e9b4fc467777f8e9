"""The compiled kernels against the pure-NumPy versions they replace, and that the library
calls them when they are enabled and not otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional import compiled, conv_pool, pooling, winograd
from cnnumpy.functional.im2col import _pad

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")

CASES = [  # batch, height, width, channels, pads
    (2, 8, 8, 3, ((1, 1), (1, 1))),
    (1, 7, 9, 5, ((0, 2), (1, 0))),
    (3, 6, 5, 1, ((2, 1), (0, 1))),
    (2, 12, 10, 16, ((0, 0), (0, 0))),
]


def _tiles_hw(h, w, pads):
    return (h + sum(pads[0]) - 2) // 2, (w + sum(pads[1]) - 2) // 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h, w, c, pads", CASES)
def test_input_transform_equals_numpy_to_the_bit(n, h, w, c, pads, dtype, monkeypatch):
    x = np.random.default_rng(0).standard_normal((n, h, w, c)).astype(dtype)
    tiles = _tiles_hw(h, w, pads)
    got = compiled.winograd3_input(_pad(x, pads), tiles)
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = winograd.input_transform(_pad(x, pads), tiles)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("n, h, w, c, pads", CASES)
def test_input_gradient_matches_numpy(n, h, w, c, pads, dtype, tol, monkeypatch):
    rng = np.random.default_rng(1)
    tiles = _tiles_hw(h, w, pads)
    dv = rng.standard_normal((16, n * tiles[0] * tiles[1], c)).astype(dtype)
    got = np.full((n, h, w, c), np.nan, dtype=dtype)  # every element must be written
    winograd.input_gradient(dv, pads, tiles, got)
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = np.empty_like(got)
    winograd.input_gradient(dv, pads, tiles, want)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keep_first", [True, False])
def test_output_pool_equals_numpy_with_ties_and_nans(dtype, keep_first, monkeypatch):
    rng = np.random.default_rng(2)
    m = rng.standard_normal((16, 40, 6)).astype(dtype)
    m[:, :10] = 0.0  # every output of these tiles is 0: four-way ties
    m[:, 10:20] = np.round(m[:, 10:20])  # small integers: some ties
    m[3, 20, 0] = m[5, 21, 1] = m[0, 22, 2] = np.nan  # NaN in one, several or all outputs
    m[15, 23, 3] = np.inf
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        out = np.empty((40, 6), dtype=dtype)
        first = np.empty((40, 6), dtype=np.uint8) if keep_first else None
        winograd.output_pool(m, out, first)
        runs.append((out, first))
    (out, first), (want, want_first) = runs
    np.testing.assert_array_equal(out, want)  # NaNs in the same places
    assert np.isnan(out[20:23]).any()
    if keep_first:
        np.testing.assert_array_equal(first, want_first)


def test_numpy_is_used_where_the_kernels_do_not_apply(monkeypatch):
    calls = []
    monkeypatch.setattr(compiled, "winograd3_output_pool", lambda *a: calls.append(a))
    m = np.zeros((16, 8, 6), dtype=np.float32)
    out = np.empty((6, 8), dtype=np.float32).T  # not C-contiguous
    winograd.output_pool(m, out, None)
    assert calls == [] and np.all(out == 0)
    monkeypatch.setattr(compiled, "ENABLED", False)
    winograd.output_pool(m, np.empty((8, 6), dtype=np.float32), None)
    assert calls == []
    assert not compiled.usable(np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("need_dx", [True, False])
def test_fused_conv_pool_calls_the_kernels_and_matches_numpy(need_dx, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 10, 12, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 8)).astype(np.float32) * 0.1
    bias = rng.standard_normal(8).astype(np.float32)
    dy = rng.standard_normal((5, 5, 6, 8)).astype(np.float32)
    called = set()
    for name in ("winograd3_input", "winograd3_input_adjoint", "winograd3_output_pool"):
        real = getattr(compiled, name)
        monkeypatch.setattr(compiled, name,
                            lambda *a, _real=real, _name=name: called.add(_name) or _real(*a))
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "same", 1, 2)
        runs.append((y, *conv_pool.conv2d_maxpool_backward(dy, cache, need_dx=need_dx)))
        if enabled:
            assert called == {"winograd3_input", "winograd3_output_pool"} | (
                {"winograd3_input_adjoint"} if need_dx else set())
            assert cache.algorithm is winograd
    for got, want in zip(*runs, strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])  # the forward pass to the bit


def test_max_of_agrees_with_the_kernel_on_the_window_order():
    """The compiled pooling takes outputs in the order pooling.max_of is given them."""
    m = np.zeros((16, 1, 1), dtype=np.float64)
    m[5, 0, 0] = 1.0  # A^T M A puts +1 in every output, the last one (1, 1) first
    blocks = winograd.output_transform(m)
    out, first = np.empty((1, 1)), np.empty((1, 1), dtype=np.uint8)
    compiled.winograd3_output_pool(m, out, first)
    want, want_first = np.empty((1, 1)), np.empty((1, 1), dtype=np.uint8)
    pooling.max_of(blocks, want, want_first)
    assert out[0, 0] == want[0, 0] and first[0, 0] == want_first[0, 0]
