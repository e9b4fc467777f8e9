"""The compiled kernels against the pure-NumPy versions they replace, and that the library
calls them when they are enabled and not otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional import pooling
from cnnumpy.functional.fast import (
    compiled,
    compiled_winograd,
    compiled_winograd43,
    compiled_winograd_rows,
    conv_pool,
    winograd,
    winograd5,
)
from cnnumpy.functional.im2col import _pad

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")

CASES = [  # batch, height, width, channels, pads
    (2, 8, 8, 3, ((1, 1), (1, 1))),
    (1, 7, 9, 5, ((0, 2), (1, 0))),
    (3, 6, 5, 1, ((2, 1), (0, 1))),
    (2, 12, 10, 16, ((0, 0), (0, 0))),
]


ALGORITHMS = [(winograd, 3), (winograd5, 5)]


def _tiles_hw(h, w, pads, size):
    return (h + sum(pads[0]) - size + 1) // 2, (w + sum(pads[1]) - size + 1) // 2


@pytest.mark.parametrize("rows_from", [1, 10**9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h, w, c, pads", CASES)
def test_3x3_input_transform_equals_numpy_to_the_bit(n, h, w, c, pads, dtype, rows_from,
                                                     monkeypatch):
    """Tile by tile and a tile row at a time (``rows_from``: tiles a row from which the
    row kernel runs; it ran where it should)."""
    x = np.random.default_rng(0).standard_normal((n, h, w, c)).astype(dtype)
    tiles = _tiles_hw(h, w, pads, 3)
    calls = []
    rows = compiled_winograd_rows.input_rows
    monkeypatch.setattr(compiled_winograd, "ROWS_FROM", rows_from)
    monkeypatch.setattr(compiled_winograd_rows, "input_rows",
                        lambda *args: calls.append(args) or rows(*args))
    got = compiled_winograd.winograd3_input(_pad(x, pads), tiles)
    assert len(calls) == (rows_from == 1)
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = winograd.input_transform(_pad(x, pads), tiles)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("n, h, w, c, pads", CASES)
def test_3x3_input_rows_read_the_padding_as_zeros(n, h, w, c, pads):
    """On the unpadded chunk, its first pixel at ``(top, left)`` of the padded grid, the row
    kernel gives the padded chunk's tiles, bit for bit."""
    x = np.random.default_rng(4).standard_normal((n, h, w, c)).astype(np.float32)
    tiles = _tiles_hw(h, w, pads, 3)
    want = compiled_winograd.winograd3_input(_pad(x, pads), tiles)
    got = np.full_like(want, np.nan)
    compiled_winograd_rows.input_rows(x, pads[0][0], pads[1][0], *tiles, got)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("n, h, w, c, pads", CASES)
def test_5x5_input_transform_matches_numpy(n, h, w, c, pads, dtype, tol, monkeypatch):
    """The NumPy version is a matrix product with B^T (x) B^T: another summation order."""
    x = np.random.default_rng(0).standard_normal((n, h + 2, w + 2, c)).astype(dtype)
    tiles = _tiles_hw(h + 2, w + 2, pads, 5)
    got = winograd5.input_transform(_pad(x, pads), tiles)
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = winograd5.input_transform(_pad(x, pads), tiles)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("algorithm, size", ALGORITHMS)
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("n, h, w, c, pads", CASES)
def test_input_gradient_matches_numpy(algorithm, size, n, h, w, c, pads, dtype, tol,
                                      monkeypatch):
    rng = np.random.default_rng(1)
    h, w = h + size - 3, w + size - 3
    tiles = _tiles_hw(h, w, pads, size)
    dv = rng.standard_normal((algorithm.VALUES, n * tiles[0] * tiles[1], c)).astype(dtype)
    got = np.full((n, h, w, c), np.nan, dtype=dtype)  # every element must be written
    algorithm.input_gradient(dv, pads, tiles, got)
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = np.empty_like(got)
    algorithm.input_gradient(dv, pads, tiles, want)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("algorithm, size", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keep_first", [True, False])
def test_output_pool_equals_numpy_with_ties_and_nans(algorithm, size, dtype, keep_first,
                                                     monkeypatch):
    """To the bit for 3x3 (the same additions in the same order); for 5x5 the NumPy version
    is a matrix product, so values agree to rounding and the maxima's places where the four
    outputs are not within rounding of each other."""
    rng = np.random.default_rng(2)
    m = rng.standard_normal((algorithm.VALUES, 40, 6)).astype(dtype)
    m[:, :10] = 0.0  # every output of these tiles is 0: four-way ties
    m[:, 10:20] = np.round(m[:, 10:20])  # small integers: some ties
    m[3, 20, 0] = m[5, 21, 1] = m[0, 22, 2] = np.nan  # NaN in one, several or all outputs
    if size == 3:  # (for 5x5, NumPy's product with A^T (x) A^T makes 0 * inf = NaN)
        m[-1, 23, 3] = np.inf
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        out = np.empty((40, 6), dtype=dtype)
        first = np.empty((40, 6), dtype=np.uint8) if keep_first else None
        algorithm.output_pool(m, out, first)
        runs.append((out, first))
    (out, first), (want, want_first) = runs
    assert np.isnan(out[20:23]).any()
    if size == 3:
        np.testing.assert_array_equal(out, want)  # NaNs in the same places
        if keep_first:
            np.testing.assert_array_equal(first, want_first)
        return
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    if keep_first:
        outputs = algorithm.output_transform(m[:, 10:20])  # random rows, after the ties
        top2 = np.sort(outputs, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-3 * np.abs(top2[1])
        np.testing.assert_array_equal(first[10:20][clear], want_first[10:20][clear])
        np.testing.assert_array_equal(first[:10], 0)  # four-way ties of exact zeros


def test_numpy_is_used_where_the_kernels_do_not_apply(monkeypatch):
    calls = []
    monkeypatch.setattr(compiled_winograd, "winograd3_output_pool", lambda *a: calls.append(a))
    m = np.zeros((16, 8, 6), dtype=np.float32)
    out = np.empty((6, 8), dtype=np.float32).T  # not C-contiguous
    winograd.output_pool(m, out, None)
    assert calls == [] and np.all(out == 0)
    monkeypatch.setattr(compiled, "ENABLED", False)
    winograd.output_pool(m, np.empty((8, 6), dtype=np.float32), None)
    assert calls == []
    assert not compiled.usable(np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("algorithm, size", ALGORITHMS)
@pytest.mark.parametrize("need_dx", [True, False])
def test_fused_conv_pool_calls_the_kernels_and_matches_numpy(algorithm, size, need_dx,
                                                             monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 10, 12, 16)).astype(np.float32)
    kernel = rng.standard_normal((size, size, 16, 8)).astype(np.float32) * 0.1
    bias = rng.standard_normal(8).astype(np.float32)
    dy = rng.standard_normal((5, 5, 6, 8)).astype(np.float32)
    called = set()
    prefix = f"winograd{size}_"
    for name in ("input_adjoint", "output_pool"):
        real = getattr(compiled_winograd, prefix + name)
        monkeypatch.setattr(compiled_winograd, prefix + name,
                            lambda *a, _real=real, _name=name: called.add(_name) or _real(*a))
    # the input transform reads the padding as zeros: no padded copy, no winograd{size}_input
    module, name = ((compiled_winograd_rows, "input_rows") if size == 3
                    else (compiled_winograd43, "input_tiles"))
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: called.add("input") or real(*a, **k))
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "same", 1, 2)
        runs.append((y, *conv_pool.conv2d_maxpool_backward(dy, cache, need_dx=need_dx)))
        if enabled:
            assert called == {"input", "output_pool"} | ({"input_adjoint"} if need_dx else set())
            assert cache.algorithm is algorithm
    for got, want in zip(*runs, strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    if size == 3:
        np.testing.assert_array_equal(runs[0][0], runs[1][0])  # the forward pass to the bit


def test_max_of_agrees_with_the_kernel_on_the_window_order():
    """The compiled pooling takes outputs in the order pooling.max_of is given them."""
    m = np.zeros((16, 1, 1), dtype=np.float64)
    m[5, 0, 0] = 1.0  # A^T M A puts +1 in every output, the last one (1, 1) first
    blocks = winograd.output_transform(m)
    out, first = np.empty((1, 1)), np.empty((1, 1), dtype=np.uint8)
    compiled_winograd.winograd3_output_pool(m, out, first)
    want, want_first = np.empty((1, 1)), np.empty((1, 1), dtype=np.uint8)
    pooling.max_of(blocks, want, want_first)
    assert out[0, 0] == want[0, 0] and first[0, 0] == want_first[0, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias, relu", [(True, True), (True, False), (False, True)])
def test_bias_relu_equals_numpy(dtype, with_bias, relu):
    rng = np.random.default_rng(4)
    y = rng.standard_normal((37, 5)).astype(dtype)
    y[3, 1], y[4, 2] = np.nan, -np.inf
    bias = rng.standard_normal(5).astype(dtype) if with_bias else None
    want = y + (bias if with_bias else 0)
    if relu:
        want = np.maximum(want, 0)
    got = y.copy()
    compiled.bias_relu(got, bias, relu)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_equals_numpy(dtype):
    rng = np.random.default_rng(5)
    dy, y = rng.standard_normal((2, 23, 7)).astype(dtype)
    y[0] = 0.0
    dy[1, 0] = np.nan
    np.testing.assert_array_equal(compiled.relu_grad(dy, y), dy * (y > 0))


@pytest.mark.parametrize("channels", [3, 16])
def test_convolution_with_relu_matches_numpy(channels, monkeypatch):
    from cnnumpy.functional import conv
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 9, 8, channels)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, channels, 6)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    dy = rng.standard_normal((3, 9, 8, 6)).astype(np.float32)
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        y, cache = conv.conv2d_forward(x, kernel, bias, 1, "same", relu=True)
        runs.append((y, *conv.conv2d_backward(dy, cache)))
    (y, dx, dkernel, dbias), (y_np, dx_np, dkernel_np, dbias_np) = runs
    for got, want in ((y, y_np), (dkernel, dkernel_np), (dbias, dbias_np)):
        np.testing.assert_array_equal(got, want)  # same products, same elementwise steps
    # the compiled col2im adds the input gradient's taps in another order
    np.testing.assert_allclose(dx, dx_np, rtol=1e-5, atol=1e-5)
