"""Pooling kernels: a naive loop reference, padding geometry, tie rules and PyTorch parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnumpy.functional import pooling as P

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {np.float64: 1e-10, np.float32: 1e-4}


def same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TF "same": (out, before, after), written independently of the library."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def random_configs(count: int, seed: int):
    """Random (shape, pool, strides, padding) with at least one output pixel."""
    g = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        shape = (int(g.integers(1, 4)), int(g.integers(1, 10)), int(g.integers(1, 10)),
                 int(g.integers(1, 4)))
        pool = (int(g.integers(1, 5)), int(g.integers(1, 5)))
        strides = (int(g.integers(1, 4)), int(g.integers(1, 4)))
        padding = str(g.choice(["valid", "same"]))
        if padding == "valid" and (pool[0] > shape[1] or pool[1] > shape[2]):
            continue
        found.append((shape, pool, strides, padding))
    return found


def naive_pool(x, dy, pool, strides, padding, kind):
    """Loop-over-pixels reference: returns (y, dx) with the first-maximum tie rule."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = pool, strides
    if padding == "same":
        (oh, top, _), (ow, left, _) = same_pads(h, kh, sh), same_pads(w, kw, sw)
    else:
        oh, ow, top, left = (h - kh) // sh + 1, (w - kw) // sw + 1, 0, 0
    y = np.zeros((n, oh, ow, c), x.dtype)
    dx = np.zeros_like(x)
    for b, r, q, ch in np.ndindex(n, oh, ow, c):
        rows = [i for i in range(r * sh - top, r * sh - top + kh) if 0 <= i < h]
        cols = [j for j in range(q * sw - left, q * sw - left + kw) if 0 <= j < w]
        cells = [(i, j) for i in rows for j in cols]
        values = [x[b, i, j, ch] for i, j in cells]
        if kind == "max":
            first = int(np.argmax(values))
            y[b, r, q, ch] = values[first]
            dx[b, cells[first][0], cells[first][1], ch] += dy[b, r, q, ch]
        else:
            y[b, r, q, ch] = np.mean(values)
            for i, j in cells:
                dx[b, i, j, ch] += dy[b, r, q, ch] / len(cells)
    return y, dx


KERNELS = {"max": (P.max_pool2d_forward, P.max_pool2d_backward),
           "avg": (P.avg_pool2d_forward, P.avg_pool2d_backward)}


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_matches_naive_reference(kind):
    g = np.random.default_rng(3)
    forward, backward = KERNELS[kind]
    for shape, pool, strides, padding in random_configs(25, seed=10):
        x = g.standard_normal(shape)
        y, cache = forward(x, pool, strides, padding)
        dy = g.standard_normal(y.shape)
        y_ref, dx_ref = naive_pool(x, dy, pool, strides, padding, kind)
        np.testing.assert_allclose(y, y_ref, atol=1e-12, err_msg=str((shape, pool, strides)))
        np.testing.assert_allclose(backward(dy, cache), dx_ref, atol=1e-12)


def test_same_padding_geometry():
    for size in range(1, 12):
        for k in range(1, 6):
            for s in range(1, 5):
                out, before, after = P.pool_padding(size, k, s, "same")
                assert out == math.ceil(size / s)
                assert (before, after) == same_pads(size, k, s)[1:]
                assert (size + before + after - k) // s + 1 == out
                if k <= size:
                    assert P.pool_padding(size, k, s, "valid") == ((size - k) // s + 1, 0, 0)


def test_pool_output_size_rejects_unknown_padding():
    with pytest.raises(ValueError, match="'full'"):
        P.pool_output_size(5, 2, 2, "full")


def test_ties_go_to_the_first_element():
    x = np.ones((1, 3, 3, 1))
    y, cache = P.max_pool2d_forward(x, (2, 2), (1, 1), "valid")
    dx = P.max_pool2d_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    y, cache = P.global_max_pool2d_forward(x)
    dx = P.global_max_pool2d_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("pool", [(2, 2), (16, 16), (17, 16)])
def test_max_position_survives_windows_of_more_than_256_elements(pool):
    # The forward pass keeps each window's first-maximum offset as a small integer; windows
    # of more offsets than a byte holds must not wrap around.
    kh, kw = pool
    x = np.zeros((2, kh, kw, 2))
    x[0, kh - 1, kw - 1, 0] = 1.0  # the last offset
    x[1, kh - 1, 0, 1] = 1.0
    y, cache = P.max_pool2d_forward(x, pool, pool, "valid")
    dx = P.max_pool2d_backward(np.full_like(y, 3.0), cache)
    expected = np.zeros_like(x)
    expected[0, kh - 1, kw - 1, 0] = expected[1, kh - 1, 0, 1] = 3.0
    expected[1, 0, 0, 0] = expected[0, 0, 0, 1] = 3.0  # all-zero windows: the first element
    np.testing.assert_array_equal(dx, expected)


def torch_pool(xt, pool, strides, padding, kind):
    """PyTorch pooling of an NCHW tensor with TF padding (asymmetric pads made explicit)."""
    if padding == "same":
        (_, top, bottom), (_, left, right) = (same_pads(xt.shape[2], pool[0], strides[0]),
                                              same_pads(xt.shape[3], pool[1], strides[1]))
    else:
        top = bottom = left = right = 0
    pads = (left, right, top, bottom)
    if kind == "max":
        return TF.max_pool2d(TF.pad(xt, pads, value=-math.inf), pool, strides)
    ones = torch.ones_like(xt[:1, :1])
    sums = TF.avg_pool2d(TF.pad(xt, pads), pool, strides, divisor_override=1)
    counts = TF.avg_pool2d(TF.pad(ones, pads), pool, strides, divisor_override=1)
    return sums / counts


def to_torch(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).requires_grad_(True)


def to_nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_matches_torch(kind, dtype):
    g = np.random.default_rng(7)
    forward, backward = KERNELS[kind]
    for shape, pool, strides, padding in random_configs(40, seed=20):
        x = g.standard_normal(shape).astype(dtype)
        y, cache = forward(x, pool, strides, padding)
        dy = g.standard_normal(y.shape).astype(dtype)
        xt = to_torch(x)
        yt = torch_pool(xt, pool, strides, padding, kind)
        yt.backward(to_torch(dy))
        where = f"{kind} {shape} pool={pool} strides={strides} {padding}"
        assert y.dtype == dtype and y.shape == to_nhwc(yt).shape, where
        np.testing.assert_allclose(y, to_nhwc(yt), atol=TOL[dtype], err_msg=where)
        dx = backward(dy, cache)
        assert dx.dtype == dtype and dx.shape == x.shape, where
        np.testing.assert_allclose(dx, to_nhwc(xt.grad), atol=TOL[dtype], err_msg=where)


def test_max_pool_ties_match_torch():
    for shape, pool, strides, padding in random_configs(30, seed=30):
        x = np.full(shape, 0.5)
        y, cache = P.max_pool2d_forward(x, pool, strides, padding)
        dy = np.random.default_rng(0).standard_normal(y.shape)
        xt = to_torch(x)
        torch_pool(xt, pool, strides, padding, "max").backward(to_torch(dy))
        np.testing.assert_allclose(P.max_pool2d_backward(dy, cache), to_nhwc(xt.grad),
                                   atol=1e-12, err_msg=str((shape, pool, strides, padding)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_pools_match_torch(kind, dtype):
    g = np.random.default_rng(11)
    forward = P.global_max_pool2d_forward if kind == "max" else P.global_avg_pool2d_forward
    backward = P.global_max_pool2d_backward if kind == "max" else P.global_avg_pool2d_backward
    for _ in range(10):
        shape = tuple(int(v) for v in g.integers(1, 8, size=4))
        x = g.standard_normal(shape).astype(dtype)
        if kind == "max" and g.random() < 0.3:
            x = np.round(x)  # many ties: the first maximum takes the gradient
        y, cache = forward(x)
        dy = g.standard_normal(y.shape).astype(dtype)
        xt = to_torch(x)
        pool = TF.max_pool2d if kind == "max" else TF.avg_pool2d
        yt = pool(xt, kernel_size=shape[1:3]).flatten(1)
        yt.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL[dtype])
        dx = backward(dy, cache)
        assert dx.shape == x.shape and dx.dtype == dtype
        np.testing.assert_allclose(dx, to_nhwc(xt.grad), atol=TOL[dtype])


@pytest.mark.parametrize("seed", range(6))
def test_max_pool_inference_forward_gives_the_same_output_and_gradient(seed):
    """Outside training the forward pass skips the offsets of the maxima; a backward pass
    after it finds them from the kept input, with the same result as after training."""
    rng = np.random.default_rng(seed)
    pool = tuple(int(v) for v in rng.integers(1, 4, size=2))
    strides = tuple(int(v) for v in rng.integers(1, 4, size=2))
    padding = ("valid", "same")[seed % 2]
    x = rng.integers(-2, 3, size=(3, 7, 8, 2)).astype(np.float64)  # many ties
    y, cache = P.max_pool2d_forward(x, pool, strides, padding)
    y_inf, cache_inf = P.max_pool2d_forward(x, pool, strides, padding, training=False)
    np.testing.assert_array_equal(y_inf, y)
    assert cache[1] is not None and cache_inf[1] is None
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(P.max_pool2d_backward(dy, cache_inf),
                                  P.max_pool2d_backward(dy, cache))
