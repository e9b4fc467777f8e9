"""The fused convolution + max pooling against the naive loop references of each, and against
the two kernels it replaces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnumpy import backend
from cnnumpy.functional import conv, pooling
from cnnumpy.functional.fast import compiled_conv_pool, conv_pool, winograd

from ..test_conv import naive_conv2d, naive_conv2d_backward
from ..test_pooling import naive_pool

PADDINGS = ["valid", "same", 1, ((0, 1), (2, 0))]


def random_case(seed: int) -> dict:
    """A convolution and a tiling pool that fit; channel counts cover both patch layouts
    (offset-major up to FEW_CHANNELS) and, with stride 1, both input-gradient paths."""
    rng = np.random.default_rng(seed)
    while True:
        case = dict(
            x_shape=(int(rng.integers(1, 4)), int(rng.integers(5, 12)), int(rng.integers(5, 12)),
                     int(rng.choice([1, 2, 3, 5, 33]))),
            kernel_hw=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            filters=int(rng.integers(1, 6)),
            strides=[1, 1, 2, (1, 2)][seed % 4],
            padding=PADDINGS[seed // 4 % len(PADDINGS)],
            dilation=[1, 2][seed // 16 % 2],
            pool=[2, 2, 3, (2, 3), (3, 1)][seed % 5],
            bias=seed % 3 != 2,
        )
        pads = conv.resolve_padding(case["padding"], case["x_shape"][1:3], case["kernel_hw"],
                                    conv._pair(case["strides"]), conv._pair(case["dilation"]))
        padded = (case["x_shape"][1] + sum(pads[0]), case["x_shape"][2] + sum(pads[1]))
        try:
            ho, wo = conv.output_hw(padded, case["kernel_hw"], conv._pair(case["strides"]),
                                    conv._pair(case["dilation"]))
        except ValueError:
            continue
        ph, pw = conv._pair(case["pool"])
        if ho >= ph and wo >= pw:
            return {**case, "pads": pads}


def _arrays(case: dict, seed: int, dtype: str = "float64") -> tuple:
    rng = np.random.default_rng(seed)
    c = case["x_shape"][3]
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    kernel = rng.standard_normal((*case["kernel_hw"], c, case["filters"])).astype(dtype)
    bias = rng.standard_normal(case["filters"]).astype(dtype) if case["bias"] else None
    return x, kernel, bias


@pytest.mark.parametrize("seed", range(40))
def test_matches_the_naive_convolution_then_the_naive_pool(seed):
    case = random_case(seed)
    x, kernel, bias = _arrays(case, seed)
    strides, dilation = conv._pair(case["strides"]), conv._pair(case["dilation"])
    pool = conv._pair(case["pool"])
    z = naive_conv2d(x, kernel, bias, strides, case["pads"], dilation, 1)
    dy = np.random.default_rng(seed + 1).standard_normal(
        (x.shape[0], z.shape[1] // pool[0], z.shape[2] // pool[1], kernel.shape[3]))
    y_ref, dz = naive_pool(z, dy, pool, pool, "valid", "max")
    dx_ref, dk_ref, db_ref = naive_conv2d_backward(dz, x, kernel, strides, case["pads"],
                                                   dilation, 1)

    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, case["strides"],
                                                case["padding"], case["dilation"], case["pool"])
    dx, dk, db = conv_pool.conv2d_maxpool_backward(dy, cache)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-12, atol=1e-12)
    if bias is None:
        assert db is None
    else:
        np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equals_the_two_kernels_it_replaces(seed, dtype, keep, monkeypatch):
    """With the patches kept for backward, and gathered again (the Winograd path, which
    rounds differently, is tested in test_winograd.py, the window-field path below, the
    compiled backward in test_compiled.py)."""
    monkeypatch.setattr(conv_pool, "KEEP_PATCHES_BYTES", 2**40 if keep else 0)
    monkeypatch.setattr(winograd, "ENABLED", False)
    monkeypatch.setattr(conv_pool, "WINDOW_PATCHES", False)  # tested below: other products
    monkeypatch.setattr(compiled_conv_pool, "MAX_CHANNELS", 0)  # its own: test_compiled.py
    case = random_case(100 + seed)
    x, kernel, bias = _arrays(case, seed, dtype)
    args = (case["strides"], case["padding"], case["dilation"])
    z, conv_cache = conv.conv2d_forward(x, kernel, bias, *args)
    y_ref, pool_cache = pooling.max_pool2d_forward(z, case["pool"], case["pool"], "valid")
    dy = np.random.default_rng(seed).standard_normal(y_ref.shape).astype(dtype)
    dx_ref, dk_ref, db_ref = conv.conv2d_backward(pooling.max_pool2d_backward(dy, pool_cache),
                                                  conv_cache)

    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, *args, case["pool"])
    assert (cache.patches is not None) == keep
    dx, dk, db = conv_pool.conv2d_maxpool_backward(dy, cache)
    assert y.dtype == dx.dtype == dk.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, y_ref)  # the same products, maxima and bias additions
    np.testing.assert_array_equal(dx, dx_ref)
    tol = 1e-5 if dtype == "float32" else 1e-12  # kernel gradients add rows in another order
    np.testing.assert_allclose(dk, dk_ref, rtol=tol, atol=tol)
    if bias is not None:
        np.testing.assert_allclose(db, db_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("channels, kernel_hw, pool", [
    (1, (3, 3), (2, 2)), (3, (3, 3), (2, 2)), (1, (5, 5), (2, 2)), (2, (3, 2), (2, 3)),
    (3, (1, 1), (2, 2)), (1, (4, 3), (3, 3)),
])
@pytest.mark.parametrize("padding", ["valid", "same", ((2, 0), (1, 3))])
def test_window_field_path_matches_the_naive_convolution_and_pool(channels, kernel_hw, pool,
                                                                  padding, monkeypatch):
    """Few channels, stride 1: each window's receptive field times the kernel at each of the
    window's offsets (float64, odd sizes that leave rows and columns out of every window),
    training with the fields kept and gathered again, and inference; the window-order
    patches alongside."""
    rng = np.random.default_rng(channels + kernel_hw[0] + pool[1])
    x = rng.standard_normal((3, 11, 10, channels))
    kernel = rng.standard_normal((*kernel_hw, channels, 5))
    bias = rng.standard_normal(5)
    pads = conv.resolve_padding(padding, (11, 10), kernel_hw, (1, 1), (1, 1))
    z = naive_conv2d(x, kernel, bias, (1, 1), pads, (1, 1), 1)
    dy = rng.standard_normal((3, z.shape[1] // pool[0], z.shape[2] // pool[1], 5))
    y_ref, dz = naive_pool(z, dy, pool, pool, "valid", "max")
    dx_ref, dk_ref, db_ref = naive_conv2d_backward(dz, x, kernel, (1, 1), pads, (1, 1), 1)
    for enabled, keep in itertools.product((True, False), (True, False)):
        monkeypatch.setattr(conv_pool, "WINDOW_PATCHES", enabled)
        monkeypatch.setattr(conv_pool, "KEEP_PATCHES_BYTES", 2**40 if keep else 0)
        y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, padding, 1, pool)
        assert cache.by_fields == enabled  # the path taken
        assert (cache.patches is not None) == keep
        dx, dk, db = conv_pool.conv2d_maxpool_backward(dy, cache)
        for got, want in ((y, y_ref), (dx, dx_ref), (dk, dk_ref), (db, db_ref)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        _, dk_only, _ = conv_pool.conv2d_maxpool_backward(dy, cache, need_dx=False)
        np.testing.assert_array_equal(dk_only, dk)
        y_infer, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, padding, 1,
                                                          pool, training=False)
        assert cache.by_fields == enabled and cache.first is None
        np.testing.assert_allclose(y_infer, y_ref, rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match="training=False"):
            conv_pool.conv2d_maxpool_backward(dy, cache)


def test_ties_go_to_the_first_maximum_in_row_major_window_order():
    x = np.zeros((2, 6, 6, 1))  # every convolution output equals the bias: all windows tie
    kernel = np.ones((3, 3, 1, 2))
    bias = np.array([0.5, -1.0])
    dy = np.random.default_rng(0).standard_normal((2, 2, 2, 2))
    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "valid", 1, 2)
    np.testing.assert_array_equal(y, np.broadcast_to(bias, y.shape))
    _, dk, db = conv_pool.conv2d_maxpool_backward(dy, cache)
    z, conv_cache = conv.conv2d_forward(x, kernel, bias, 1, "valid")
    _, dz = naive_pool(z, dy, (2, 2), (2, 2), "valid", "max")
    assert np.count_nonzero(dz) == dy.size  # one winner per window
    _, dk_ref, db_ref = conv.conv2d_backward(dz, conv_cache)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_same_results_on_one_thread_and_on_several(seed, monkeypatch):
    monkeypatch.setattr(winograd, "ENABLED", False)  # its own test: test_winograd.py
    case = random_case(200 + seed)
    x, kernel, bias = _arrays(case, seed, "float32")
    x = np.concatenate([x] * 40)  # enough images for several chunks
    args = (case["strides"], case["padding"], case["dilation"], case["pool"])
    results = []
    for threads in (1, 2, 3):
        backend.set_num_threads(threads)
        try:
            y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, *args)
            results.append((y, *conv_pool.conv2d_maxpool_backward(np.ones_like(y), cache)))
        finally:
            backend.set_num_threads(None)
    for got in results[1:]:
        np.testing.assert_array_equal(got[0], results[0][0])
        np.testing.assert_array_equal(got[1], results[0][1])
        for a, b in zip(got[2:], results[0][2:], strict=True):
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("keep", [True, False])
def test_window_field_path_same_results_on_one_thread_and_on_several(keep, monkeypatch):
    monkeypatch.setattr(conv_pool, "KEEP_PATCHES_BYTES", 2**40 if keep else 0)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 2**15)  # several chunks per thread
    rng = np.random.default_rng(7)
    x = rng.standard_normal((150, 12, 11, 2)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 2, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    dy = rng.standard_normal((150, 5, 4, 8)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        backend.set_num_threads(threads)
        try:
            y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "valid", 1, 2)
            assert cache.by_fields and len(cache.parts) >= threads
            results.append((y, *conv_pool.conv2d_maxpool_backward(dy, cache)))
        finally:
            backend.set_num_threads(None)
    for got in results[1:]:  # within rounding: the products' columns are split differently
        for a, b in zip(got, results[0], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_need_dx_false_skips_the_input_gradient():
    x, kernel, bias = _arrays(random_case(0), 0)
    y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "same", 1, 2)
    dx, dk, _ = conv_pool.conv2d_maxpool_backward(np.ones_like(y), cache, need_dx=False)
    assert dx is None and dk.shape == kernel.shape


def test_bad_calls_say_what_is_wrong():
    x = np.zeros((1, 6, 6, 2))
    with pytest.raises(ValueError, match=r"input \(1, 6, 6, 2\) and kernel \(3, 3, 3, 4\)"):
        conv_pool.conv2d_maxpool_forward(x, np.zeros((3, 3, 3, 4)), None, 1, "valid", 1, 2)
    with pytest.raises(ValueError, match=r"pool window \(5, 5\) does not fit .*\(4, 4\)"):
        conv_pool.conv2d_maxpool_forward(x, np.zeros((3, 3, 2, 4)), None, 1, "valid", 1, 5)
    y, cache = conv_pool.conv2d_maxpool_forward(x, np.zeros((3, 3, 2, 4)), None, 1, "valid", 1,
                                                2, training=False)
    np.testing.assert_array_equal(y, np.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="training=False"):
        conv_pool.conv2d_maxpool_backward(np.ones_like(y), cache)
