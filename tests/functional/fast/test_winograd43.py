"""Winograd F(4x4, 3x3)'s transforms: a tile's convolution, each adjoint against its
transform, and the compiled passes against the NumPy ones (the whole convolution against
im2col and the naive loops is in test_winograd_conv.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional.fast import (
    compiled,
    compiled_winograd43,
    compiled_winograd43_rows,
    winograd5,
    winograd43,
)

PADS = ((1, 2), (0, 3))


def _tiles_hw(h, w, pads):
    (top, bottom), (left, right) = pads
    return -(-(h + top + bottom - 2) // 4), -(-(w + left + right - 2) // 4)


def _padded(x, pads, tiles_hw):
    (top, bottom), (left, right) = pads
    ht, wt = tiles_hw
    out = np.zeros((x.shape[0], 4 * ht + 2, 4 * wt + 2, x.shape[3]), dtype=x.dtype)
    h, w = x.shape[1:3]
    out[:, top:top + h, left:left + w] = x
    return out


def test_one_tile_is_the_direct_correlation():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((1, 6, 6, 1))
    g = rng.standard_normal((3, 3, 1, 1))
    v = np.empty((36, 1, 1))
    winograd43.input_tiles(d, (1, 1), v)
    m = v * winograd43.kernel_transform(g)  # one channel: the sum over channels is this
    y = np.empty((1, 4, 4, 1))
    winograd43.output_tiles(m, y)
    want = [[(d[0, i:i + 3, j:j + 3, 0] * g[:, :, 0, 0]).sum() for j in range(4)]
            for i in range(4)]
    np.testing.assert_allclose(y[0, :, :, 0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_compiled", [True, False])
def test_each_adjoint_is_its_transforms_transpose(monkeypatch, use_compiled):
    """<T a, b> = <a, T' b> for the input, output and kernel transforms (float64)."""
    monkeypatch.setattr(compiled, "ENABLED", use_compiled and compiled.AVAILABLE)
    rng = np.random.default_rng(1)
    n, h, w, c = 2, 5, 7, 3
    tiles_hw = _tiles_hw(h, w, PADS)
    t = n * tiles_hw[0] * tiles_hw[1]
    x, dv = rng.standard_normal((n, h, w, c)), rng.standard_normal((36, t, c))
    v = np.empty((36, t, c))
    winograd43.input_tiles(_padded(x, PADS, tiles_hw), tiles_hw, v)
    dx = np.full_like(x, np.nan)
    winograd43.input_gradient(dv, PADS, tiles_hw, dx)
    np.testing.assert_allclose((v * dv).sum(), (x * dx).sum(), rtol=1e-12)

    ho, wo = 4 * tiles_hw[0] - 1, 4 * tiles_hw[1] - 3  # outputs cropped in both directions
    m, dy = rng.standard_normal((36, t, c)), rng.standard_normal((n, ho, wo, c))
    y = np.full((n, ho, wo, c), np.nan)
    winograd43.output_tiles(m, y)
    dm = np.full((36, t, c), np.nan)
    winograd43.output_tiles_adjoint(dy, dm)
    np.testing.assert_allclose((y * dy).sum(), (m * dm).sum(), rtol=1e-12)

    g, du = rng.standard_normal((3, 3, c, 4)), rng.standard_normal((36, c, 4))
    np.testing.assert_allclose((winograd43.kernel_transform(g) * du).sum(),
                               (g * winograd43.kernel_transform_adjoint(du)).sum(), rtol=1e-12)


@pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h, w", [(8, 8), (5, 7), (1, 3)])
def test_compiled_equals_numpy(monkeypatch, dtype, h, w):
    rng = np.random.default_rng(2)
    n, c = 3, 16
    tiles_hw = _tiles_hw(h, w, PADS)
    t = n * tiles_hw[0] * tiles_hw[1]
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    dv = rng.standard_normal((36, t, c)).astype(dtype)
    ho, wo = h + 1, w + 1  # the output of padding PADS
    dy = rng.standard_normal((n, ho, wo, c)).astype(dtype)
    results = {}
    for use_compiled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", use_compiled)
        v, dm = np.full((36, t, c), np.nan, dtype), np.full((36, t, c), np.nan, dtype)
        y, dx = np.full((n, ho, wo, c), np.nan, dtype), np.full(x.shape, np.nan, dtype)
        winograd43.input_tiles(_padded(x, PADS, tiles_hw), tiles_hw, v)
        winograd43.output_tiles(dv, y)
        winograd43.output_tiles_adjoint(dy, dm)
        winograd43.input_gradient(dv, PADS, tiles_hw, dx)
        results[use_compiled] = (v, y, dm, dx)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(results[True], results[False], strict=True):
        assert got.dtype == dtype and not np.isnan(got).any()
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


@pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("step", [4, 2])
@pytest.mark.parametrize("pads", [PADS, ((1, 1), (1, 1)), ((0, 0), (2, 0))])
def test_compiled_input_tiles_read_the_padding_as_zeros(pads, step):
    """``origin=(top, left)`` on the unpadded chunk gives the padded chunk's tiles, bit for
    bit (the convolution's forward and backward gather their tiles this way, no padded
    copy made), whatever the padding on each side and the tiles' step."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 7, 9, 16)).astype(np.float32)
    (top, bottom), (left, right) = pads
    hp, wp = 7 + top + bottom, 9 + left + right
    tiles_hw = ((hp - 6) // step + 1, (wp - 6) // step + 1)
    xpad = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    want, got = (np.full((36, 2 * tiles_hw[0] * tiles_hw[1], 16), np.nan, np.float32)
                 for _ in range(2))
    compiled_winograd43.input_tiles(xpad, tiles_hw, want, step=step)
    compiled_winograd43.input_tiles(x, tiles_hw, got, step=step, origin=(top, left))
    assert not np.isnan(want).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("origin", [(0, 0), (1, 1), (2, 0), (0, 2)])
@pytest.mark.parametrize("h, w, c", [(16, 18, 16), (13, 22, 3), (6, 31, 1), (30, 18, 32)])
@pytest.mark.parametrize("whole", [True, False])
def test_rows_kernel_equals_the_tiles_kernel(monkeypatch, dtype, origin, h, w, c, whole):
    """The kernel that makes a tile row at a time gives the tile-by-tile kernel's bits,
    whatever the padding (read as zeros), the channels, and whether the last tiles reach
    past the input (``whole``) or stop short of its last rows and columns."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, h, w, c)).astype(dtype)
    top, left = origin
    up = 3 if whole else 0
    tiles_hw = ((h + 2 * top - 2 + up) // 4, (w + 2 * left - 2 + up) // 4)
    assert tiles_hw[1] >= compiled_winograd43_rows.MIN_TILES
    calls = []
    monkeypatch.setattr(compiled_winograd43_rows, "input_rows", _spy(
        compiled_winograd43_rows.input_rows, calls))
    want, got = (np.full((36, 2 * tiles_hw[0] * tiles_hw[1], c), np.nan, dtype)
                 for _ in range(2))
    two, four, five, _ = compiled_winograd43._constants(dtype)
    compiled_winograd43._input_tiles(x, top, left, *tiles_hw, 4, want, two, four, five)
    compiled_winograd43.input_tiles(x, tiles_hw, got, origin=origin)
    assert len(calls) == 1 and not np.isnan(want).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ho, wo, f", [(16, 16, 16), (13, 22, 3), (5, 7, 1), (9, 30, 40)])
def test_row_kernels_equal_the_tile_kernels(monkeypatch, dtype, ho, wo, f):
    """The output transform (with and without its bias and ReLU), its adjoint and the input
    gradient a tile row at a time give the tile-by-tile kernels' bits: the last tiles
    cropped or not, the input gradient's padding on each side, rows and columns no tile
    reads; each of them ran."""
    rng = np.random.default_rng(7)
    ht, wt = -(-ho // 4), -(-wo // 4)
    t = 2 * ht * wt
    m, dy = rng.standard_normal((36, t, f)).astype(dtype), rng.standard_normal(
        (2, ho, wo, f)).astype(dtype)
    m[0, 0, 0] = np.nan  # the ReLU keeps a NaN, as np.maximum does
    bias = rng.standard_normal(f).astype(dtype)
    two, four, five, eight = compiled_winograd43._constants(dtype)
    calls = []
    for name in ("output_rows", "output_adjoint_rows", "input_gradient_rows"):
        monkeypatch.setattr(compiled_winograd43_rows, name, _spy(
            getattr(compiled_winograd43_rows, name), calls))
    for relu in (True, False):
        want, got = (np.full((2, ho, wo, f), -1.0, dtype) for _ in range(2))
        compiled_winograd43._output_tiles(m, want, bias, relu, two, four, eight)
        compiled_winograd43.output_tiles(m, got, bias, relu)
        np.testing.assert_array_equal(got, want)
    want, got = (np.full((36, t, f), np.nan, dtype) for _ in range(2))
    compiled_winograd43._output_tiles_adjoint(dy, want, two, four, eight)
    compiled_winograd43.output_tiles_adjoint(dy, got)
    np.testing.assert_array_equal(got, want)
    for top, left, more in [(1, 1, -1), (0, 2, 0), (2, 0, -2), (1, 0, 3)]:
        # dx: the padded input of tiles that reach past its last rows and columns (more < 0)
        # or stop short of them (more > 0: rows and columns no tile reads, their gradient 0)
        h, w = 4 * ht + 2 - top + more, 4 * wt + 2 - left + more
        want, got = (np.full((2, h, w, f), np.nan, dtype) for _ in range(2))
        compiled_winograd43._input_gradient(m, top, left, ht, wt, 4, want, two, four, five)
        compiled_winograd43.input_gradient(m, ((top, top), (left, left)), (ht, wt), got)
        assert not np.isnan(want[:, :, :, 1:]).any()
        np.testing.assert_array_equal(got, want)
    by_rows = wt >= compiled_winograd43_rows.MIN_TILES
    gradient = by_rows and f < compiled_winograd43_rows.GRADIENT_BELOW
    assert len(calls) == 3 * by_rows + 4 * gradient  # two outputs, an adjoint, 4 gradients


def _spy(fn, calls):
    def spy(*args):
        calls.append(args)
        return fn(*args)
    return spy


@pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [(3, 16), (64, 64), (5, 1)])
def test_compiled_sandwich_equals_numpy(monkeypatch, dtype, channels):
    """The kernel transform and its adjoint (F(4x4, 3x3)'s, and F(2x2, 5x5)'s adjoint, whose
    ``m`` has 6 columns too) compiled and as the Kronecker product."""
    rng = np.random.default_rng(5)
    kernel = rng.standard_normal((3, 3, *channels)).astype(dtype)
    du = rng.standard_normal((36, *channels)).astype(dtype)
    results = {}
    for use_compiled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", use_compiled)
        results[use_compiled] = (winograd43.kernel_transform(kernel),
                                 winograd43.kernel_transform_adjoint(du),
                                 winograd5.kernel_transform_adjoint(du))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for got, want in zip(results[True], results[False], strict=True):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("use_compiled", [True, False])
@pytest.mark.parametrize("bias, relu", [(True, True), (True, False), (False, True)])
def test_output_tiles_add_the_bias_then_the_relu(monkeypatch, use_compiled, bias, relu):
    """``output_tiles(m, y, b, relu)`` is ``output_tiles(m, y)``, then ``y += b``, then
    ``max(y, 0)`` (NaN kept, as np.maximum does); the compiled pass and NumPy's alike."""
    monkeypatch.setattr(compiled, "ENABLED", use_compiled and compiled.AVAILABLE)
    rng = np.random.default_rng(3)
    n, ho, wo, f = 2, 7, 5, 16
    t = n * -(-ho // 4) * -(-wo // 4)
    m = rng.standard_normal((36, t, f)).astype(np.float32)
    m[0, 0, 3] = np.nan  # reaches output (0, 0, 0, 3)
    b = rng.standard_normal(f).astype(np.float32) if bias else None
    want = np.full((n, ho, wo, f), np.nan, np.float32)
    winograd43.output_tiles(m, want)
    if bias:
        want += b
    if relu:
        want = np.maximum(want, 0)
    got = np.full((n, ho, wo, f), np.nan, np.float32)
    winograd43.output_tiles(m, got, b, relu)
    assert np.isnan(got[0, 0, 0, 3]) and (not relu or got[~np.isnan(got)].min() >= 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
