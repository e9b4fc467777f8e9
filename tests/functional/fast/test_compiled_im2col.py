"""The compiled im2col gather and its adjoint against the NumPy paths they replace.

Without Numba the kernels run as plain Python (slowly, on these small shapes), so the
arithmetic is checked either way; the last tests also run whole convolutions both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled_im2col
from cnnumpy.functional.im2col import _pad, col2im, im2col, output_hw

# kernel (kh, kw), strides, pads ((top, bottom), (left, right)), dilation
GEOMETRIES = [
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),
    ((3, 3), (2, 2), ((0, 1), (0, 1)), (1, 1)),
    ((5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
    ((3, 2), (1, 2), ((2, 0), (0, 3)), (1, 1)),
    ((3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    ((2, 3), (2, 1), ((1, 0), (3, 2)), (1, 2)),
    ((3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((1, 1), (1, 1), ((4, 4), (4, 4)), (1, 1)),  # padding wider than the kernel
]


def _out_hw(shape, kernel_hw, strides, pads, dilation):
    padded = (shape[1] + sum(pads[0]), shape[2] + sum(pads[1]))
    return output_hw(padded, kernel_hw, strides, dilation)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel_hw, strides, pads, dilation", GEOMETRIES)
def test_patches_equal_the_numpy_gather_to_the_bit(kernel_hw, strides, pads, dilation, dtype):
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 5)).astype(dtype)
    out_hw = _out_hw(x.shape, kernel_hw, strides, pads, dilation)
    got = compiled_im2col.patches(x, pads, kernel_hw, strides, dilation, out_hw)
    want = conv._patches(_pad(x, pads), kernel_hw, strides, dilation)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)


def test_a_negative_pad_crops():
    x = np.random.default_rng(1).standard_normal((2, 8, 7, 4))
    pads = ((-1, 2), (1, -2))
    got = compiled_im2col.patches(x, pads, (3, 3), (1, 1), (1, 1), (7, 4))
    want = conv._patches(_pad(x[:, 1:, :-2], ((0, 2), (1, 0))), (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel_hw, strides, pads, dilation", GEOMETRIES)
def test_add_patches_is_col2im(kernel_hw, strides, pads, dilation):
    shape = (2, 7, 6, 5)
    out_hw = _out_hw(shape, kernel_hw, strides, pads, dilation)
    rng = np.random.default_rng(2)
    cols = rng.standard_normal((shape[0] * out_hw[0] * out_hw[1], kernel_hw[0] * kernel_hw[1]
                                * shape[3]))
    dx = np.full(shape, 0.5)
    compiled_im2col.add_patches(cols, pads, kernel_hw, strides, dilation, out_hw, dx)
    want = col2im(cols.reshape(shape[0], *out_hw, *kernel_hw, shape[3]), shape, strides, pads,
                  dilation)
    np.testing.assert_allclose(dx, want + 0.5, rtol=1e-12, atol=1e-12)
    # and the adjoint of the gather: <patches(x), cols> = <x, add_patches(cols)>
    x = rng.standard_normal(shape)
    gathered = compiled_im2col.patches(x, pads, kernel_hw, strides, dilation, out_hw)
    np.testing.assert_allclose(np.vdot(gathered, cols), np.vdot(x, dx - 0.5), rtol=1e-10)
    assert im2col(x, kernel_hw, strides, pads, dilation).shape[1:3] == out_hw


def test_add_patches_refuses_patches_that_do_not_fit():
    dx = np.zeros((2, 5, 5, 4))
    with pytest.raises(ValueError, match="add_patches"):
        compiled_im2col.add_patches(np.zeros((2 * 25, 35)), ((1, 1), (1, 1)), (3, 3), (1, 1),
                                    (1, 1), (5, 5), dx)
    with pytest.raises(ValueError, match="C-contiguous"):
        compiled_im2col.add_patches(np.zeros((2 * 4, 9)), ((0, 0), (0, 0)), (3, 3), (1, 1),
                                    (1, 1), (2, 2), np.zeros((2, 4, 4, 1))[:, ::-1])


def test_applies_only_to_contiguous_float_arrays_of_more_than_few_channels(monkeypatch):
    from cnnumpy.functional.fast import compiled

    monkeypatch.setattr(compiled, "ENABLED", True)
    x = np.zeros((2, 5, 5, conv.FEW_CHANNELS + 1), np.float32)
    assert compiled_im2col.applies(x) == compiled.usable(x)
    assert not compiled_im2col.applies(x[:, ::2])
    assert not compiled_im2col.applies(x[..., :conv.FEW_CHANNELS])
    assert not compiled_im2col.applies(x.astype(np.int32))
    monkeypatch.setattr(compiled_im2col, "ENABLED", False)
    assert not compiled_im2col.applies(x)
    assert not compiled_im2col.scatters(np.zeros((3, 3, 8, 4), np.float32))


@pytest.mark.parametrize("strides, padding, dilation, channels", [
    (1, "same", 1, 16), (2, ((1, 1), (1, 1)), 1, 16), (2, "same", 1, 8),
    (1, "valid", 2, 6), ((1, 2), ((2, 0), (1, 1)), 1, 33), (1, "same", 1, 3)])
def test_convolution_equals_the_numpy_paths(strides, padding, dilation, channels, monkeypatch):
    """Forward and kernel gradient to the bit (same patches, same products); the input
    gradient (col2im instead of per-tap products or a convolution) within rounding."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 9, 10, channels)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, channels, 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled_im2col, "ENABLED", enabled)
        y, cache = conv.conv2d_forward(x, kernel, bias, strides, padding, dilation)
        dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
        runs.append((y, *conv.conv2d_backward(dy, cache)))
    (y, dx, dkernel, dbias), (y_np, dx_np, dkernel_np, dbias_np) = runs
    np.testing.assert_array_equal(y, y_np)
    np.testing.assert_array_equal(dkernel, dkernel_np)
    np.testing.assert_array_equal(dbias, dbias_np)
    np.testing.assert_allclose(dx, dx_np, rtol=1e-5, atol=1e-5)
