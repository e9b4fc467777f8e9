"""The compiled pooling of window blocks and its window gradients against NumPy's
:func:`pooling.max_of` and :func:`pooling.window_grads` (to the bit, NaN and ties included),
and that the convolution-and-pooling paths call them."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional import pooling
from cnnumpy.functional.fast import compiled, compiled_pool, conv_pool

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")

SHAPES = [(4, 8, 37), (9, 5, 3), (2, 1, 1), (1, 6, 4)]  # windows, then one block's shape


def _blocks(shape, dtype, seed=0):
    """Random blocks with ties (a window offset equal to an earlier one), NaN and signed
    zeros, so that every rule of ``max_of`` is exercised."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(-3, 4, shape).astype(dtype)  # small integers: many ties
    flat = blocks.reshape(shape[0], -1)
    flat[-1, ::7] = np.nan
    flat[0, 1::11] = np.nan
    flat[:, 2::13] = -0.0
    return blocks


def _index_array(shape, windows):
    return np.empty(shape, dtype=np.min_scalar_type(windows - 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_max_of_equals_numpy_to_the_bit(shape, dtype):
    blocks = _blocks(shape, dtype)
    got, got_first = np.empty(shape[1:], dtype), _index_array(shape[1:], shape[0])
    compiled_pool.max_of(blocks, got, got_first)
    want, want_first = np.empty(shape[1:], dtype), _index_array(shape[1:], shape[0])
    pooling.max_of(list(blocks), want, want_first)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(got_first, want_first)
    without = np.empty(shape[1:], dtype)  # inference: the maxima only
    compiled_pool.max_of(blocks, without)
    assert np.array_equal(without, want, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_window_grads_equal_numpy_to_the_bit(shape, dtype):
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(shape[1:]).astype(dtype)
    dy.reshape(-1)[::5] = np.nan
    first = rng.integers(0, shape[0], shape[1:]).astype(np.min_scalar_type(shape[0] - 1))
    got = compiled_pool.window_grads(dy, first, shape[0])
    want = pooling.window_grads(dy, first, shape[0])
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_non_contiguous_arrays_take_the_numpy_path(monkeypatch):
    """Views the kernel cannot read as flat arrays go to NumPy, with the same results."""
    blocks = _blocks((4, 6, 10), np.float32)[:, :, ::2]
    out, first = np.empty((6, 5), np.float32), np.empty((6, 5), np.uint8)
    calls = []
    monkeypatch.setattr(compiled_pool, "_max_first", lambda *a: calls.append(a))
    compiled_pool.max_of(blocks, out, first)
    want, want_first = np.empty((6, 5), np.float32), np.empty((6, 5), np.uint8)
    pooling.max_of(list(blocks), want, want_first)
    assert not calls
    assert np.array_equal(out, want, equal_nan=True) and np.array_equal(first, want_first)


PATHS = [  # input channels, dilation: whether a step calls (max_of, window_grads)
    (1, 1, (True, True)),  # each window's receptive field (window_fields)
    (8, 1, (True, False)),  # window-order patches; the compiled backward reads the maxima
    (24, 1, (False, True)),  # Winograd: its output transform pools in its own kernel
    (24, 2, (True, True)),  # window-order patches, NumPy's backward
]


@pytest.mark.parametrize("channels, dilation, calls", PATHS)
def test_conv_pool_paths_use_the_compiled_pooling(channels, dilation, calls, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 10, 10, channels)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, channels, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    dy = rng.standard_normal((4, 5, 5, 16)).astype(np.float32)

    def step():
        y, cache = conv_pool.conv2d_maxpool_forward(x, kernel, bias, 1, "same", dilation, 2)
        return (y, *conv_pool.conv2d_maxpool_backward(dy, cache))

    counts = {"max_of": 0, "window_grads": 0}
    for name, real in [(name, getattr(compiled_pool, name)) for name in counts]:
        def call(*args, name=name, real=real):
            counts[name] += 1
            return real(*args)
        monkeypatch.setattr(compiled_pool, name, call)
    got = step()
    assert (counts["max_of"] > 0, counts["window_grads"] > 0) == calls
    monkeypatch.setattr(compiled, "ENABLED", False)  # NumPy's pooling: the same results
    for a, b in zip(got, step(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
