"""The convolution kernels against a naive loop reference, and the im2col/col2im helpers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from cnnumpy.functional import _conv_input_grad, conv

# ----- a naive reference: one output pixel, one filter, one kernel tap at a time ---------------


def naive_conv2d(x, kernel, bias, strides, pads, dilation, groups):
    (sh, sw), (dh, dw) = strides, dilation
    xpad = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw, cg, f = kernel.shape
    ho = (xpad.shape[1] - (kh - 1) * dh - 1) // sh + 1
    wo = (xpad.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, f), dtype=x.dtype)
    for oh in range(ho):
        for ow in range(wo):
            for o in range(f):
                channels = slice(o // (f // groups) * cg, (o // (f // groups) + 1) * cg)
                for i in range(kh):
                    for j in range(kw):
                        window = xpad[:, oh * sh + i * dh, ow * sw + j * dw, channels]
                        y[:, oh, ow, o] += window @ kernel[i, j, :, o]
    return y if bias is None else y + bias


def naive_conv2d_backward(dy, x, kernel, strides, pads, dilation, groups):
    (sh, sw), (dh, dw) = strides, dilation
    (top, _), (left, _) = pads
    xpad = np.pad(x, ((0, 0), *pads, (0, 0)))
    dxpad, dkernel = np.zeros_like(xpad), np.zeros_like(kernel)
    kh, kw, cg, f = kernel.shape
    for oh in range(dy.shape[1]):
        for ow in range(dy.shape[2]):
            for o in range(f):
                channels = slice(o // (f // groups) * cg, (o // (f // groups) + 1) * cg)
                for i in range(kh):
                    for j in range(kw):
                        r, c = oh * sh + i * dh, ow * sw + j * dw
                        dxpad[:, r, c, channels] += np.outer(dy[:, oh, ow, o], kernel[i, j, :, o])
                        dkernel[i, j, :, o] += dy[:, oh, ow, o] @ xpad[:, r, c, channels]
    dx = dxpad[:, top:top + x.shape[1], left:left + x.shape[2]]
    return dx, dkernel, dy.sum(axis=(0, 1, 2))


# ----- randomized configurations -----------------------------------------------------------------

PADDINGS = ["valid", "same", 0, 1, 2, (1, 0), (0, 2), ((0, 1), (2, 0)), ((2, 1), (0, 3))]
STRIDES = [1, 2, (1, 2), (2, 1), 3]
DILATIONS = [1, 2, (2, 1)]


def random_config(seed):
    """A random convolution that fits; the padding form and the kind of grouping cycle with
    the seed, so that a few consecutive seeds cover all of them in several combinations."""
    rng = np.random.default_rng(seed)
    kind = ["plain", "grouped", "depthwise"][(seed + seed // len(PADDINGS)) % 3]
    while True:
        groups = 1 if kind == "plain" else int(rng.integers(2, 5))
        cg = 1 if kind == "depthwise" else int(rng.integers(2, 4))
        cfg = dict(
            x_shape=(int(rng.integers(1, 4)), int(rng.integers(4, 10)), int(rng.integers(4, 10)),
                     groups * cg),
            kernel_shape=(int(rng.integers(1, 5)), int(rng.integers(1, 5)), cg,
                          groups * int(rng.integers(1, 4))),
            strides=conv._pair(STRIDES[rng.integers(len(STRIDES))]),
            padding=PADDINGS[seed % len(PADDINGS)],
            dilation=conv._pair(DILATIONS[rng.integers(len(DILATIONS))]),
            groups=groups,
            use_bias=bool(rng.integers(2)),
        )
        pads = conv.resolve_padding(cfg["padding"], cfg["x_shape"][1:3],
                                    cfg["kernel_shape"][:2], cfg["strides"], cfg["dilation"])
        sizes = [conv.conv_output_size(cfg["x_shape"][1 + a], cfg["kernel_shape"][a],
                                       cfg["strides"][a], *pads[a], cfg["dilation"][a])
                 for a in (0, 1)]
        if min(sizes) >= 1:
            return cfg, pads


def random_arrays(cfg, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"]).astype(dtype)
    kernel = rng.standard_normal(cfg["kernel_shape"]).astype(dtype)
    bias = rng.standard_normal(cfg["kernel_shape"][3]).astype(dtype) if cfg["use_bias"] else None
    return x, kernel, bias


def forward(x, kernel, bias, cfg):
    return conv.conv2d_forward(x, kernel, bias, cfg["strides"], cfg["padding"], cfg["dilation"],
                               cfg["groups"])


@pytest.mark.parametrize("seed", range(30))
def test_forward_and_backward_match_naive_loops(seed):
    cfg, pads = random_config(seed)
    x, kernel, bias = random_arrays(cfg, seed=seed)
    y, cache = forward(x, kernel, bias, cfg)
    expected = naive_conv2d(x, kernel, bias, cfg["strides"], pads, cfg["dilation"], cfg["groups"])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12, err_msg=str(cfg))

    dy = np.random.default_rng(seed + 100).standard_normal(y.shape)
    dx, dkernel, dbias = conv.conv2d_backward(dy, cache)
    ex_dx, ex_dkernel, ex_dbias = naive_conv2d_backward(dy, x, kernel, cfg["strides"], pads,
                                                        cfg["dilation"], cfg["groups"])
    np.testing.assert_allclose(dx, ex_dx, rtol=1e-12, atol=1e-12, err_msg=str(cfg))
    np.testing.assert_allclose(dkernel, ex_dkernel, rtol=1e-12, atol=1e-12, err_msg=str(cfg))
    if cfg["use_bias"]:
        np.testing.assert_allclose(dbias, ex_dbias, rtol=1e-12, atol=1e-12)
    else:
        assert dbias is None


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("chunk_bytes", [1, 700])
def test_chunked_path_matches_naive_loops_across_chunk_boundaries(seed, chunk_bytes, monkeypatch):
    """Tiny chunks (one image, or a few) give the same results as the naive reference, and
    need_dx=False skips only the input gradient."""
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(seed)
    cfg, pads = next(c for c in map(random_config, range(3 * seed, 3 * seed + 9))
                     if c[0]["groups"] == 1)  # the chunked path is the ungrouped one
    x_shape = (int(rng.integers(3, 8)), *cfg["x_shape"][1:])
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal(cfg["kernel_shape"])
    bias = rng.standard_normal(cfg["kernel_shape"][3])
    y, cache = forward(x, kernel, bias, cfg)
    expected = naive_conv2d(x, kernel, bias, cfg["strides"], pads, cfg["dilation"], 1)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12, err_msg=str(cfg))
    dy = rng.standard_normal(y.shape)
    ex_dx, ex_dkernel, _ = naive_conv2d_backward(dy, x, kernel, cfg["strides"], pads,
                                                 cfg["dilation"], 1)
    dx, dkernel, _ = conv.conv2d_backward(dy, cache)
    np.testing.assert_allclose(dx, ex_dx, rtol=1e-12, atol=1e-12, err_msg=str(cfg))
    np.testing.assert_allclose(dkernel, ex_dkernel, rtol=1e-12, atol=1e-12, err_msg=str(cfg))
    no_dx, dkernel_only, _ = conv.conv2d_backward(dy, cache, need_dx=False)
    assert no_dx is None
    np.testing.assert_allclose(dkernel_only, ex_dkernel, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("dx_as_conv", [True, False])
def test_stride_one_input_gradient_both_ways_matches_naive_loops(seed, dx_as_conv, monkeypatch):
    """The input gradient as a convolution of the padded dy with the flipped kernel, and as
    one product per kernel tap, over paddings narrower and wider than the kernel's reach;
    patches gathered in either layout (offset-major up to FEW_CHANNELS channels)."""
    monkeypatch.setattr(_conv_input_grad, "DX_AS_CONV", dx_as_conv)
    monkeypatch.setattr(_conv_input_grad, "DX_AS_CONV_MIN_CHANNELS", 1)  # inputs: 1-3 channels
    monkeypatch.setattr(conv, "CHUNK_BYTES", [1, 900, 2**22][seed % 3])
    monkeypatch.setattr(conv, "FEW_CHANNELS", [0, 2, 64, 1][seed % 4])
    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2, endpoint=True))
    padding = (PADDINGS + [((4, 0), (1, 5))])[seed % (len(PADDINGS) + 1)]
    dilation = DILATIONS[seed % len(DILATIONS)]
    x = rng.standard_normal((int(rng.integers(1, 5)), int(rng.integers(8, 12)),
                             int(rng.integers(8, 12)), int(rng.integers(1, 4))))
    kernel = rng.standard_normal((kh, kw, x.shape[3], int(rng.integers(1, 4))))
    y, cache = conv.conv2d_forward(x, kernel, None, 1, padding, dilation)
    pads = conv.resolve_padding(padding, x.shape[1:3], (kh, kw), 1, dilation)
    np.testing.assert_allclose(y, naive_conv2d(x, kernel, None, (1, 1), pads,
                                               conv._pair(dilation), 1), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    ex_dx, ex_dkernel, _ = naive_conv2d_backward(dy, x, kernel, (1, 1), pads,
                                                 conv._pair(dilation), 1)
    dx, dkernel, dbias = conv.conv2d_backward(dy, cache)
    assert dbias is None
    np.testing.assert_allclose(dx, ex_dx, rtol=1e-12, atol=1e-12, err_msg=str(padding))
    np.testing.assert_allclose(dkernel, ex_dkernel, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups, cg", [(2, 3), (4, 1)])
def test_grouped_backward_can_skip_the_input_gradient(groups, cg):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, groups * cg))
    kernel = rng.standard_normal((3, 2, cg, 2 * groups))
    y, cache = conv.conv2d_forward(x, kernel, None, 1, "same", groups=groups)
    dy = rng.standard_normal(y.shape)
    dx, dkernel, _ = conv.conv2d_backward(dy, cache)
    no_dx, dkernel_only, _ = conv.conv2d_backward(dy, cache, need_dx=False)
    assert dx is not None and no_dx is None
    np.testing.assert_array_equal(dkernel_only, dkernel)


@pytest.mark.parametrize("x_shape, kernel_shape, padding, groups", [
    ((2, 4, 5, 3), (1, 1, 3, 2), 2, 1),
    ((1, 5, 4, 4), (2, 2, 2, 4), ((3, 0), (0, 3)), 2),
    ((2, 3, 3, 3), (1, 2, 1, 6), ((2, 2), (1, 3)), 3),
])
def test_padding_wider_than_the_kernel_reach(x_shape, kernel_shape, padding, groups):
    # Rows and columns of pure padding: whole output rows see no input at all.
    cfg = dict(x_shape=x_shape, kernel_shape=kernel_shape, strides=(1, 1), padding=padding,
               dilation=(1, 1), groups=groups, use_bias=True)
    pads = conv.resolve_padding(padding, x_shape[1:3], kernel_shape[:2])
    x, kernel, bias = random_arrays(cfg)
    y, cache = forward(x, kernel, bias, cfg)
    np.testing.assert_allclose(y, naive_conv2d(x, kernel, bias, (1, 1), pads, (1, 1), groups),
                               rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    expected = naive_conv2d_backward(dy, x, kernel, (1, 1), pads, (1, 1), groups)
    for got, want in zip(conv.conv2d_backward(dy, cache), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_random_configs_cover_every_option():
    configs = [random_config(seed)[0] for seed in range(30)]
    assert {str(c["padding"]) for c in configs} == {str(p) for p in PADDINGS}
    assert {c["strides"] for c in configs} >= {(1, 1), (2, 2), (1, 2), (2, 1)}
    assert {c["dilation"] for c in configs} == {(1, 1), (2, 2), (2, 1)}
    assert {c["use_bias"] for c in configs} == {True, False}
    kinds = {(c["groups"] > 1, c["kernel_shape"][2] == 1) for c in configs}
    assert {(False, False), (True, False), (True, True)} <= kinds
    assert any(c["kernel_shape"][3] > c["x_shape"][3] for c in configs if c["groups"] > 1
               and c["kernel_shape"][2] == 1), "a depthwise multiplier above 1"


@pytest.mark.parametrize("groups, cg", [(1, 3), (2, 2), (3, 1)])
@pytest.mark.parametrize("strides", [1, 2])
def test_float32_stays_float32(groups, cg, strides):
    cfg = dict(strides=strides, padding="same", dilation=1, groups=groups)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 5, groups * cg)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, cg, 2 * groups)).astype(np.float32)
    y, cache = forward(x, kernel, np.zeros(2 * groups, np.float32), cfg)
    grads = conv.conv2d_backward(np.ones_like(y), cache)
    assert [a.dtype for a in (y, *grads)] == [np.float32] * 4


def test_conv2d_forward_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="groups=2"):
        conv.conv2d_forward(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 1, 2)), groups=2)


# ----- im2col and col2im ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_im2col_matches_direct_indexing(seed):
    cfg, pads = random_config(seed)
    x = np.random.default_rng(seed).standard_normal(cfg["x_shape"])
    kh, kw = cfg["kernel_shape"][:2]
    cols = conv.im2col(x, (kh, kw), cfg["strides"], cfg["padding"], cfg["dilation"])
    xpad = np.pad(x, ((0, 0), *pads, (0, 0)))
    (sh, sw), (dh, dw) = cfg["strides"], cfg["dilation"]
    for oh in range(cols.shape[1]):
        for ow in range(cols.shape[2]):
            for i in range(kh):
                for j in range(kw):
                    np.testing.assert_array_equal(
                        cols[:, oh, ow, i, j], xpad[:, oh * sh + i * dh, ow * sw + j * dw])


def test_im2col_is_a_view_without_padding():
    x = np.arange(2 * 6 * 5 * 3, dtype=np.float32).reshape(2, 6, 5, 3)
    cols = conv.im2col(x, (3, 2), strides=(2, 1), dilation=(1, 2))
    assert cols.shape == (2, 2, 3, 3, 2, 3)
    assert np.shares_memory(cols, x)


@pytest.mark.parametrize("seed", range(15))
def test_col2im_is_the_adjoint_of_im2col(seed):
    cfg, _ = random_config(seed)
    rng = np.random.default_rng(seed)
    args = (cfg["strides"], cfg["padding"], cfg["dilation"])
    b = rng.standard_normal(cfg["x_shape"])
    cols_b = conv.im2col(b, cfg["kernel_shape"][:2], *args)
    a = rng.standard_normal(cols_b.shape)
    lhs = np.sum(conv.col2im(a, b.shape, *args) * b)
    rhs = np.sum(a * cols_b)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


# ----- output sizes and padding ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_output_size_invariants(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        size, kernel, stride, before, after, dilation = (int(v) for v in rng.integers(
            [1, 1, 1, 0, 0, 1], [20, 6, 4, 4, 4, 3]))
        out = conv.conv_output_size(size, kernel, stride, before, after, dilation)
        padded, span = size + before + after, (kernel - 1) * dilation + 1
        if padded < span:
            assert out <= 0
            continue
        assert out >= 1
        assert (out - 1) * stride + span <= padded  # the last window fits
        assert out * stride + span > padded  # one more would not
        x = np.zeros((1, size, 3, 1))
        cols = conv.im2col(x, (kernel, 1), (stride, 1), ((before, after), (0, 0)), (dilation, 1))
        assert cols.shape[1] == out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [5, 6, 7, 8])
@pytest.mark.parametrize("kernel, dilation", [(1, 1), (2, 1), (3, 1), (4, 1), (3, 2)])
def test_same_padding_gives_ceil_of_size_over_stride(stride, size, kernel, dilation):
    (top, bottom), (left, right) = conv.resolve_padding("same", (size, size + 1), kernel,
                                                        stride, dilation)
    assert conv.conv_output_size(size, kernel, stride, top, bottom, dilation) == math.ceil(
        size / stride)
    assert conv.conv_output_size(size + 1, kernel, stride, left, right, dilation) == math.ceil(
        (size + 1) / stride)
    assert 0 <= bottom - top <= 1 and 0 <= right - left <= 1  # the extra goes bottom/right


@pytest.mark.parametrize("size, kernel, stride, dilation, expected", [
    (6, 3, 2, 1, (0, 1)),  # TensorFlow: out 3, total 1, all of it at the bottom
    (7, 3, 2, 1, (1, 1)),
    (5, 4, 1, 1, (1, 2)),
    (5, 3, 1, 2, (2, 2)),
    (8, 1, 2, 1, (0, 0)),
    (4, 5, 3, 1, (2, 2)),
])
def test_same_padding_split(size, kernel, stride, dilation, expected):
    pads = conv.resolve_padding("same", (size, size), (kernel, kernel), stride, dilation)
    assert pads == (expected, expected)


@pytest.mark.parametrize("padding, expected", [
    ("valid", ((0, 0), (0, 0))),
    ("VALID", ((0, 0), (0, 0))),
    (2, ((2, 2), (2, 2))),
    ((1, 3), ((1, 1), (3, 3))),
    ([0, 1], ((0, 0), (1, 1))),
    (((1, 2), (3, 0)), ((1, 2), (3, 0))),
    ([[1, 2], [3, 0]], ((1, 2), (3, 0))),
])
def test_resolve_padding_forms(padding, expected):
    assert conv.resolve_padding(padding, (9, 9), (3, 3)) == expected


@pytest.mark.parametrize("padding", ["full", -1, (1, -1), (1, 2, 3), ((1, 2), (3,)), 1.5, True,
                                     None, ((1, 2), 3)])
def test_bad_padding_is_rejected_with_its_value(padding):
    with pytest.raises(ValueError, match=re.escape(f"padding={padding!r}")):
        conv.normalize_padding(padding)
