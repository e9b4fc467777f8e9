"""Compiled depthwise convolution (one filter per input channel), forward and backward.

For each output row, each kernel tap (i, j) adds the input row it reads, times the tap's
weight of each channel, to the output row; the innermost loop runs over the channels, which
are contiguous in NHWC, so it is one vector loop over ``C`` values per output pixel and tap.
Taps that fall in the padding are skipped (their columns or rows clipped), so nothing is
padded or copied. The bias and a ReLU are applied to each output row while it is in cache.
Backward, one loop nest does both gradients: for each tap and output position, the kernel
gradient gains input times ``g`` and the input gradient gains ``g`` times the weight, ``g``
being ``dy`` (masked by the ReLU's output where one was fused). The kernel and bias
gradients are summed per image in the input's dtype, then over the images in float64.
One slice of the batch per thread (:func:`cnnumpy.backend.parallel_map`).

Where the NumPy path (:mod:`cnnumpy.functional.fast.depthwise`) makes one whole-chunk pass
per tap and step (multiply, add; for the input gradient also a strided add), this reads the
input and ``dy`` rows once per tap while they are in cache. Nine depthwise 3x3 layers of the
shapes in MobileNetV2 (alpha 0.35, 32x32 inputs; batch 64, stride 1 and 2, 16-576 channels,
two threads) took 17 ms forward and 35 ms backward in all, against 55 and 137 ms by the NumPy
path.

Applies to depth multiplier 1 (``M == 1``); any kernel size, stride, padding and dilation.
With stride 1 and up to 64 channels, :mod:`~cnnumpy.functional.fast.compiled_depthwise_rows`
runs instead (whole image rows as vectors; 2-3x faster forward at 64x32x32x16-48).
Must equal: :func:`cnnumpy.functional.fast.depthwise.forward` and ``backward`` with
:data:`ENABLED` False (the NumPy path), within float rounding. Checked by
``tests/functional/fast/test_compiled_depthwise.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled
from cnnumpy.functional.fast import compiled_depthwise_rows as rows
from cnnumpy.functional.im2col import Pads

ENABLED = True
"""Use these kernels where they apply (False: the NumPy path; for A/B timings and tests)."""


def applies(x: Any, kernel: Any) -> bool:
    """Whether :func:`forward` and :func:`backward` compute this depthwise convolution."""
    return (ENABLED and compiled.usable(x, kernel) and x.dtype == kernel.dtype
            and kernel.shape[2] == 1 and kernel.shape[3] == x.shape[3])


@compiled.jit
def _columns(b_count, w, stride, offset):  # pragma: no cover (compiled)
    """The output columns ``b`` whose input column ``b * stride + offset`` is in [0, w)."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (w - 1 - offset) // stride + 1 if w - 1 - offset >= 0 else 0
    return lo, max(lo, min(b_count, hi))


@compiled.jit
def _forward(x, weights, bias, geometry, relu, y):  # pragma: no cover (compiled)
    n, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    kh, kw = weights.shape[0], weights.shape[1]
    sh, sw, dh, dw, top, left = geometry
    use_bias = bias.shape[0] > 0
    for i in range(n):
        for a in range(ho):
            out = y[i, a]
            out[:] = 0
            for ki in range(kh):
                r = a * sh + ki * dh - top
                if r < 0 or r >= h:
                    continue
                row = x[i, r]
                for kj in range(kw):
                    offset = kj * dw - left
                    lo, hi = _columns(wo, w, sw, offset)
                    wt = weights[ki, kj]
                    for b in range(lo, hi):
                        o = out[b]
                        src = row[b * sw + offset]
                        for k in range(c):
                            o[k] += src[k] * wt[k]
            if use_bias or relu:
                for b in range(wo):
                    o = out[b]
                    for k in range(c):
                        v = o[k] + bias[k] if use_bias else o[k]
                        o[k] = v if v > 0 or not relu else (v if v != v else 0)


@compiled.jit
def _backward(dy, x, weights, relu_output, geometry, dkernel, dbias,
              dx):  # pragma: no cover (compiled)
    n, h, w, c = x.shape
    _, ho, wo, _ = dy.shape
    kh, kw = weights.shape[0], weights.shape[1]
    sh, sw, dh, dw, top, left = geometry
    relu = relu_output.shape[0] > 0
    need_dx = dx.shape[0] > 0
    g = np.empty((wo, c), dtype=x.dtype)  # one row of dy, masked by the ReLU
    dk = np.empty((kh, kw, c), dtype=x.dtype)  # one image's kernel gradient
    db = np.empty(c, dtype=x.dtype)
    for i in range(n):
        dk[:] = 0
        db[:] = 0
        if need_dx:
            dx[i] = 0
        for a in range(ho):
            for b in range(wo):
                for k in range(c):
                    v = dy[i, a, b, k]
                    if relu:
                        v = v if relu_output[i, a, b, k] > 0 else v * 0  # NaN stays NaN
                    g[b, k] = v
                    db[k] += v
            for ki in range(kh):
                r = a * sh + ki * dh - top
                if r < 0 or r >= h:
                    continue
                row = x[i, r]
                for kj in range(kw):
                    offset = kj * dw - left
                    lo, hi = _columns(wo, w, sw, offset)
                    wt = weights[ki, kj]
                    dwt = dk[ki, kj]
                    if need_dx:
                        drow = dx[i, r]
                        for b in range(lo, hi):
                            gb = g[b]
                            src = row[b * sw + offset]
                            dst = drow[b * sw + offset]
                            for k in range(c):
                                dwt[k] += src[k] * gb[k]
                                dst[k] += gb[k] * wt[k]
                    else:
                        for b in range(lo, hi):
                            gb = g[b]
                            src = row[b * sw + offset]
                            for k in range(c):
                                dwt[k] += src[k] * gb[k]
        dkernel += dk
        dbias += db


def _geometry(strides: tuple[int, int], dilation: tuple[int, int], pads: Pads) -> Any:
    (sh, sw), (dh, dw), ((top, _), (left, _)) = strides, dilation, pads
    return np.array([sh, sw, dh, dw, top, left], dtype=np.int64)


def _parts(n: int) -> list[slice]:
    return backend.batch_slices(n, max(1, min(n, backend.get_num_threads())))


def forward(x: Any, kernel: Any, bias: Any | None, strides: tuple[int, int], pads: Pads,
            dilation: tuple[int, int], relu: bool, out_hw: tuple[int, int]) -> Any:
    """The depthwise convolution of ``x`` (plus the bias, then the ReLU if ``relu``).

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, 1, C); bias: (C,) -> y: (N, Ho, Wo, C).
    """
    kh, kw, _, c = kernel.shape
    x = np.ascontiguousarray(x)
    weights = np.ascontiguousarray(kernel.reshape(kh, kw, c))
    b = np.zeros(0, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    y = np.empty((x.shape[0], *out_hw, c), dtype=x.dtype)
    if strides == (1, 1) and rows.applies(c):  # whole rows at a time: (N, H, W * C) views
        n, h, w, _ = x.shape
        ho, wo = out_hw
        xr, yr, tiled = x.reshape(n, h, w * c), y.reshape(n, ho, wo * c), rows.tiled(weights)
        geometry = rows.geometry(x.shape, dilation, pads)
        b = np.tile(b, wo) if b.size else b
        backend.parallel_map(
            lambda p: rows.forward_rows(xr[p], tiled, b, geometry, relu, yr[p]), _parts(n))
        return y
    geometry = _geometry(strides, dilation, pads)
    backend.parallel_map(lambda part: _forward(x[part], weights, b, geometry, relu, y[part]),
                         _parts(x.shape[0]))
    return y


def backward(dy: Any, x: Any, kernel: Any, strides: tuple[int, int], pads: Pads,
             dilation: tuple[int, int], relu_output: Any | None, has_bias: bool,
             need_dx: bool) -> tuple[Any, Any, Any]:
    """``(dx, dkernel, dbias)`` of :func:`forward`; ``dy`` is the gradient of its output
    (after the ReLU, whose output ``relu_output`` is, if one was fused). ``dx`` is None
    unless ``need_dx``, ``dbias`` None unless ``has_bias``.

    Shape:
        dy: (N, Ho, Wo, C); x, dx: (N, H, W, C); dkernel: (kh, kw, 1, C); dbias: (C,).
    """
    kh, kw, _, c = kernel.shape
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    weights = np.ascontiguousarray(kernel.reshape(kh, kw, c))
    mask = np.zeros((0, 1, 1, 1), x.dtype) if relu_output is None \
        else np.ascontiguousarray(relu_output, dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    no_dx = np.zeros((0, 1, 1, 1), x.dtype)
    geometry = _geometry(strides, dilation, pads)
    n, h, w, _ = x.shape
    by_rows = strides == (1, 1) and rows.applies(c)
    if by_rows:  # whole rows at a time: (N, H, W * C) views
        ho, wo = dy.shape[1:3]
        dy, x, weights = dy.reshape(n, ho, wo * c), x.reshape(n, h, w * c), rows.tiled(weights)
        mask = mask.reshape(n, ho, wo * c) if relu_output is not None else mask.reshape(0, 1, 1)
        no_dx = no_dx.reshape(0, 1, 1)
        dx_view = dx.reshape(n, h, w * c) if dx is not None else None
        geometry = rows.geometry((n, h, w, c), dilation, pads)
    else:
        dx_view = dx

    def work(part: slice) -> tuple[Any, Any]:
        dkernel = np.zeros((kh, kw, c), dtype=np.float64)
        dbias = np.zeros(c, dtype=np.float64)
        kernel_fn = rows.backward_rows if by_rows else _backward
        kernel_fn(dy[part], x[part], weights, mask[part] if relu_output is not None else mask,
                  geometry, dkernel, dbias, dx_view[part] if dx_view is not None else no_dx)
        return dkernel, dbias

    dkernel, dbias = conv.sum_in_order(backend.parallel_map(work, _parts(x.shape[0])), True)
    return (dx, dkernel.astype(x.dtype).reshape(kernel.shape),
            dbias.astype(x.dtype) if has_bias else None)
