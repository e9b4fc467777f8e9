"""Winograd F(2x2, 3x3) and F(2x2, 5x5): the transforms and their adjoints, and the fused
convolution + 2x2 max pooling that uses them, against the naive loop references. Every test
runs twice: on the pure-NumPy kernels and on the compiled ones (when Numba is installed)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled, conv_pool, winograd, winograd5

from ..test_conv import naive_conv2d, naive_conv2d_backward
from ..test_pooling import naive_pool


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def kernels(request, monkeypatch):
    if request.param == "compiled" and not compiled.AVAILABLE:
        pytest.skip("Numba is not installed: the compiled kernels are not used")
    monkeypatch.setattr(compiled, "ENABLED", request.param == "compiled")
    return request.param


@pytest.mark.parametrize("r", [3, 5])
def test_toom_cook_matrices_give_a_correlation(r):
    at, g, bt = winograd5.toom_cook(r, (0.0, 1.0, -1.0, 2.0, -2.0)[:r])
    rng = np.random.default_rng(r)
    d, k = rng.standard_normal(r + 1), rng.standard_normal(r)
    np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), [d[:r] @ k, d[1:] @ k], rtol=1e-12)


@pytest.mark.parametrize("algorithm, size", [(winograd, 3), (winograd5, 5)])
def test_tiles_of_the_transforms_are_the_direct_convolution(algorithm, size):
    rng = np.random.default_rng(0)
    xpad = rng.standard_normal((2, 7 + size, 9 + size, 3))
    kernel = rng.standard_normal((size, size, 3, 4))
    tiles = (3, 4)  # the 8x10 valid output's 2x2 tiles that fit: rows 0-5, columns 0-7
    y = algorithm.output_transform(algorithm.input_transform(xpad, tiles)
                                   @ algorithm.kernel_transform(kernel))
    z = naive_conv2d(xpad, kernel, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        np.testing.assert_allclose(y[k], z[:, i:6:2, j:8:2].reshape(-1, 4), rtol=1e-10,
                                   atol=1e-10)


@pytest.mark.parametrize("algorithm", [winograd, winograd5])
@pytest.mark.parametrize("transform, adjoint, shape", [
    ("output_transform", "output_transform_adjoint", (7, 3)),
    ("kernel_transform", "kernel_transform_adjoint", (2, 5)),
])
def test_adjoints_satisfy_the_inner_product_identity(algorithm, transform, adjoint, shape):
    transform, adjoint = getattr(algorithm, transform), getattr(algorithm, adjoint)
    size = 3 if algorithm is winograd else 5
    lead = (algorithm.VALUES,) if transform.__name__ == "output_transform" else (size, size)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((*lead, *shape))
    b = rng.standard_normal(transform(a).shape)
    np.testing.assert_allclose(np.sum(transform(a) * b), np.sum(a * adjoint(b)), rtol=1e-12)


@pytest.mark.parametrize("algorithm, margin", [(winograd, 2), (winograd5, 4)])
@pytest.mark.parametrize("batch, tiles, channels", [(2, (3, 4), 3), (1, (3, 2), 2),
                                                    (3, (2, 2), 1)])
def test_input_transform_adjoint_satisfies_the_inner_product_identity(
        algorithm, margin, batch, tiles, channels):
    rng = np.random.default_rng(2)
    padded_shape = (batch, 2 * tiles[0] + margin + 1, 2 * tiles[1] + margin, channels)
    xpad = rng.standard_normal(padded_shape)
    dv = rng.standard_normal((algorithm.VALUES, batch * tiles[0] * tiles[1], channels))
    lhs = np.sum(algorithm.input_transform(xpad, tiles) * dv)
    rhs = np.sum(xpad * algorithm.input_transform_adjoint(dv, padded_shape, tiles))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def random_case(seed: int) -> dict:
    """A 3x3 or 5x5 stride-1 convolution with enough channels for the Winograd path, any
    padding, even and odd output sizes (an odd last row or column is not pooled)."""
    rng = np.random.default_rng(seed)
    return dict(
        size=3 if seed % 2 else 5,
        x_shape=(int(rng.integers(1, 4)), int(rng.integers(6, 13)), int(rng.integers(6, 13)),
                 int(rng.choice([16, 19, 32]))),
        filters=int(rng.integers(1, 6)),
        padding=["same", "valid", 1, ((0, 1), (2, 0)), ((1, 1), (0, 3))][seed % 5],
        bias=seed % 3 != 2,
    )


def _arrays(case: dict, seed: int, dtype: str = "float64") -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    size = case["size"]
    kernel = rng.standard_normal((size, size, case["x_shape"][3], case["filters"])).astype(dtype)
    bias = rng.standard_normal(case["filters"]).astype(dtype) if case["bias"] else None
    return x, kernel, bias


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("seed", range(20))
def test_fused_path_matches_the_naive_convolution_then_the_naive_pool(seed, keep, monkeypatch):
    monkeypatch.setattr(conv_pool, "KEEP_PATCHES_BYTES", 2**40 if keep else 0)
    case = random_case(seed)
    x, kernel, bias = _arrays(case, seed)
    pads = conv.resolve_padding(case["padding"], x.shape[1:3], kernel.shape[:2])
    z = naive_conv2d(x, kernel, bias, (1, 1), pads, (1, 1), 1)
    dy = np.random.default_rng(seed + 1).standard_normal(
        (x.shape[0], z.shape[1] // 2, z.shape[2] // 2, kernel.shape[3]))
    y_ref, dz = naive_pool(z, dy, (2, 2), (2, 2), "valid", "max")
    dx_ref, dk_ref, db_ref = naive_conv2d_backward(dz, x, kernel, (1, 1), pads, (1, 1), 1)

    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, case["padding"], 1, 2)
    assert cache.transformed_kernel is not None  # the Winograd path ran
    assert (cache.patches is not None) == keep
    dx, dk, db = conv_pool.conv2d_maxpool_backward(dy, cache)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-9, atol=1e-9)
    if bias is None:
        assert db is None
    else:
        np.testing.assert_allclose(db, db_ref, rtol=1e-9, atol=1e-9)
    assert conv_pool.conv2d_maxpool_backward(dy, cache, need_dx=False)[0] is None


@pytest.mark.parametrize("seed", range(8))
def test_float32_fused_path_is_within_rounding_of_the_direct_one(seed, monkeypatch):
    case = random_case(50 + seed)
    x, kernel, bias = _arrays(case, seed, "float32")
    dy = None
    results = []
    for use in (True, False):
        monkeypatch.setattr(winograd, "ENABLED", use)
        y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, case["padding"], 1, 2)
        assert (cache.transformed_kernel is not None) == use
        dy = np.random.default_rng(seed).standard_normal(y.shape).astype("float32")
        results.append((y, *conv_pool.conv2d_maxpool_backward(dy, cache)))
    # away from ties, a different rounding never picks another maximum at these scales
    for got, ref in zip(results[0], results[1], strict=True):
        if ref is None:
            continue
        assert got.dtype == np.float32
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * scale)


def test_same_results_on_one_thread_and_on_several():
    x, kernel, bias = _arrays(random_case(3), 3, "float32")
    x = np.concatenate([x] * 40)  # enough images for several chunks
    results = []
    for threads in (1, 2, 3):
        backend.set_num_threads(threads)
        try:
            y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "same", 1, 2)
            results.append((y, *conv_pool.conv2d_maxpool_backward(np.ones_like(y), cache)))
        finally:
            backend.set_num_threads(None)
    for got in results[1:]:
        np.testing.assert_array_equal(got[0], results[0][0])  # each image on its own
        np.testing.assert_array_equal(got[1], results[0][1])
        for a, b in zip(got[2:], results[0][2:], strict=True):  # summed over other chunks
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel_shape, strides, dilation, pool, used", [
    ((3, 3, 16, 4), 1, 1, 2, True),
    ((3, 3, 15, 4), 1, 1, 2, False),  # too few channels
    ((5, 5, 16, 4), 1, 1, 2, True),
    ((5, 5, 15, 4), 1, 1, 2, False),
    ((7, 7, 16, 4), 1, 1, 2, False),
    ((3, 3, 16, 4), 2, 1, 2, False),
    ((3, 3, 16, 4), 1, 2, 2, False),
    ((3, 3, 16, 4), 1, 1, 3, False),
])
def test_only_3x3_stride_1_convolutions_with_2x2_pools_take_the_winograd_path(
        kernel_shape, strides, dilation, pool, used):
    x = np.ones((1, 14, 14, kernel_shape[2]))
    _, cache = conv_pool.conv2d_maxpool_forward(x, np.ones(kernel_shape), None, strides,
                                                "valid", dilation, pool)
    assert (cache.transformed_kernel is not None) == used
