"""Compiled im2col and col2im for ungrouped convolutions (see
:mod:`cnnumpy.functional.fast.compiled`, whose switch they follow).

The NumPy path (:func:`cnnumpy.functional.conv._patches`) pads a chunk (a zero fill and a
copy), takes the strided view of every receptive field and copies it into the patch matrix.
:func:`patches` writes each patch row in one pass instead, zeros where the kernel reaches
into the padding, and never makes the padded copy. With no dilation along the width the
``kw`` taps of a kernel row are one run of ``kw * C`` contiguous values of an image row
(clipped at the borders), whatever the stride; with dilation, ``kw`` runs of ``C``. The
indices are unsigned so that the copies vectorize (with signed ones the same loops ran 2-3x
slower than NumPy's copy). One thread, a chunk of 8 ResNet-20 stage-1 images (32x32x16, 3x3,
padding 1): 0.21 ms against 0.34 for padding and copying; at stride 2, 0.05 against 0.15.

:func:`add_patches` is the adjoint (col2im): it adds each patch row back where its values
came from. The input gradient is then one product per chunk, ``dy @ kernel^T``, and this
pass (:class:`cnnumpy.functional.conv.InputGrad`), where NumPy made one narrow product per
kernel tap (``(rows, F) @ (F, C)``) and a strided add, or gathered the padded output
gradient for a convolution. One thread, 8 images: stage 1 0.76 ms against 1.31-1.43 per
tap; stride 2 (16 to 32 channels) 0.24 against 0.47; 13x13, 8 to 16 channels, 0.15 against
0.24; LeNet-like 5x5 from 32 channels 1.45 against 2.05 by the convolution.

Patches of few channels (:data:`cnnumpy.functional.conv.FEW_CHANNELS`) stay on the NumPy
path, which gathers them offset-major (as fast for 3 channels, faster for 1).

Must equal: :func:`cnnumpy.functional.conv._patches` of the padded chunk, to the bit (both
only copy), and :func:`cnnumpy.functional.im2col.col2im` (within rounding: another order of
the sums). Checked by ``tests/functional/fast/test_compiled_im2col.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled

ENABLED = True
"""Gather patches this way where :func:`applies`; False: always by the NumPy path."""


@compiled.jit
def _gather(x, top, left, kh, kw, sh, sw, dh, dw, ho, wo, cols):  # pragma: no cover (compiled)
    n, h, w, c = x.shape
    src = x.reshape(-1)
    out = cols.reshape(-1)
    run = kw * c
    zero = out.dtype.type(0)
    at = np.uint64(0)  # unsigned indices: no wraparound checks, so the copies vectorize
    for i in range(n):
        for oh in range(ho):
            for ow in range(wo):
                first = ow * sw - left  # input column of tap 0
                for a in range(kh):
                    ih = oh * sh + a * dh - top
                    if ih < 0 or ih >= h:
                        for q in range(np.uint64(run)):
                            out[at + q] = zero
                        at += np.uint64(run)
                        continue
                    row = np.uint64((i * h + ih) * w * c)
                    if dw == 1:  # one run, clipped to the image
                        lo = min(max(-first, 0), kw) * c
                        hi = max(min(w - first, kw) * c, lo)
                        for q in range(np.uint64(lo)):
                            out[at + q] = zero
                        at += np.uint64(lo)
                        begin = row + np.uint64(max(first * c + lo, 0))  # unused when hi == lo
                        for q in range(np.uint64(hi - lo)):
                            out[at + q] = src[begin + q]
                        at += np.uint64(hi - lo)
                        for q in range(np.uint64(run - hi)):
                            out[at + q] = zero
                        at += np.uint64(run - hi)
                        continue
                    for b in range(kw):
                        iw = first + b * dw
                        if iw < 0 or iw >= w:
                            for q in range(np.uint64(c)):
                                out[at + q] = zero
                        else:
                            begin = row + np.uint64(iw * c)
                            for q in range(np.uint64(c)):
                                out[at + q] = src[begin + q]
                        at += np.uint64(c)


@compiled.jit
def _scatter(cols, top, left, kh, kw, sh, sw, dh, dw, ho, wo, dx):  # pragma: no cover
    n, h, w, c = dx.shape
    out = dx.reshape(-1)
    src = cols.reshape(-1)
    run = kw * c
    at = np.uint64(0)
    for i in range(n):
        for oh in range(ho):
            for ow in range(wo):
                first = ow * sw - left
                for a in range(kh):
                    ih = oh * sh + a * dh - top
                    if ih < 0 or ih >= h:
                        at += np.uint64(run)
                        continue
                    row = np.uint64((i * h + ih) * w * c)
                    if dw == 1:  # one run, clipped to the image
                        lo = min(max(-first, 0), kw) * c
                        hi = max(min(w - first, kw) * c, lo)
                        begin = row + np.uint64(max(first * c + lo, 0))  # unused when hi == lo
                        part = at + np.uint64(lo)
                        for q in range(np.uint64(hi - lo)):
                            out[begin + q] += src[part + q]
                        at += np.uint64(run)
                        continue
                    for b in range(kw):
                        iw = first + b * dw
                        if iw >= 0 and iw < w:
                            begin = row + np.uint64(iw * c)
                            for q in range(np.uint64(c)):
                                out[begin + q] += src[at + q]
                        at += np.uint64(c)


def applies(x: Any) -> bool:
    """Whether :func:`patches` gathers from ``x`` (compiled kernels on, a C-contiguous float
    NumPy array of more than ``FEW_CHANNELS`` channels)."""
    from cnnumpy.functional import conv  # it imports this module

    return (ENABLED and compiled.usable(x) and x.ndim == 4 and x.flags.c_contiguous
            and x.shape[3] > conv.FEW_CHANNELS)


def scatters(kernel: Any) -> bool:
    """Whether :func:`add_patches` computes the input gradient of a convolution with this
    kernel (compiled kernels on, a float NumPy kernel from more than ``FEW_CHANNELS``
    input channels)."""
    from cnnumpy.functional import conv  # it imports this module

    return ENABLED and compiled.usable(kernel) and kernel.shape[2] > conv.FEW_CHANNELS


def add_patches(cols: Any, pads: tuple[tuple[int, int], tuple[int, int]],
                kernel_hw: tuple[int, int], strides: tuple[int, int],
                dilation: tuple[int, int], out_hw: tuple[int, int], dx: Any) -> None:
    """The adjoint of :func:`patches`: add every patch row of ``cols`` into ``dx`` where
    its values came from (the padding's dropped), in place.

    Shape:
        cols: (N * Ho * Wo, kh * kw * C); dx: (N, H, W, C), C-contiguous.
    """
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_hw, strides, dilation, out_hw
    if cols.shape != (dx.shape[0] * ho * wo, kh * kw * dx.shape[3]) or not (
            dx.flags.c_contiguous):
        raise ValueError(f"add_patches: patches {cols.shape} do not fit a C-contiguous "
                         f"gradient {dx.shape} with {out_hw} outputs of a {kernel_hw} kernel")
    _scatter(np.ascontiguousarray(cols), pads[0][0], pads[1][0], kh, kw, sh, sw, dh, dw, ho, wo, dx)


def patches(x: Any, pads: tuple[tuple[int, int], tuple[int, int]],
            kernel_hw: tuple[int, int], strides: tuple[int, int],
            dilation: tuple[int, int], out_hw: tuple[int, int]) -> Any:
    """The patch matrix of ``x`` padded by ``pads`` (a negative pad crops), for ``out_hw``
    output positions, where :func:`applies`.

    Shape:
        x: (N, H, W, C) -> (N * Ho * Wo, kh * kw * C).
    """
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_hw, strides, dilation, out_hw
    cols = np.empty((x.shape[0] * ho * wo, kh * kw * x.shape[3]), dtype=x.dtype)
    _gather(x, pads[0][0], pads[1][0], kh, kw, sh, sw, dh, dw, ho, wo, cols)
    return cols
