"""Compiled depthwise convolution with stride 1, a whole output row at a time.

With stride 1, output pixels ``b`` and input pixels ``b + offset`` of one kernel tap are
both contiguous runs of a row, and so are their ``(pixel, channel)`` values: an image row
of shape (W, C) is one vector of ``W * C`` values. Each tap is then one long vector loop
over the row, ``out[j] += row[j + offset * C] * w[j]``, with the tap's weights tiled along
the row (``w[b * C + k] = kernel[ki, kj, k]``; a few KB, in cache). The per-pixel loops of
:mod:`cnnumpy.functional.fast.compiled_depthwise` run ``C`` values at a time, too few to
keep the vector units busy for MobileNetV2's 16-48 channels at 32x32: at 64x32x32x48 (3x3,
one thread, on two loaded cores) its forward took 10 and its backward 16-18 ms, these ones
5.5 and 13; at 64x32x32x16 5.5 and 8 against 3 and 5 ms. The row is cut into spans of
:data:`SPAN` values so that the tiled weights (and, backward, the kernel gradient's
per-column accumulators, summed per channel at the end of each image) stay in L1.

Must equal the NumPy path, like :mod:`~cnnumpy.functional.fast.compiled_depthwise`;
checked by ``tests/functional/fast/test_compiled_depthwise.py`` (its stride-1 cases).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled


@compiled.jit
def _span(wo, w, offset):  # pragma: no cover (compiled)
    """The output columns ``[lo, hi)`` whose input column ``b + offset`` is in [0, w)."""
    lo = max(0, -offset)
    return lo, max(lo, min(wo, w - offset))


@compiled.jit
def _tap(out, row, wt, shift, j0, j1):  # pragma: no cover (compiled)
    """``out[j] += row[j + shift] * wt[j mod span]`` for ``j`` in [j0, j1) (j0 a multiple of
    C), a span at a time through views indexed from 0 (no negative-index checks)."""
    span = wt.shape[0]
    for s0 in range(j0, j1, span):
        s1 = min(s0 + span, j1)
        src, dst = row[s0 + shift:s1 + shift], out[s0:s1]
        for j in range(s1 - s0):
            dst[j] += src[j] * wt[j]


@compiled.jit
def forward_rows(x, tiled, bias, geometry, relu, y):  # pragma: no cover (compiled)
    """``y`` (N, Ho, Wo * C) from ``x`` (N, H, W * C), ``tiled`` (kh, kw, span) and
    ``bias`` (Wo * C, or empty)."""
    n, h, _ = x.shape
    _, ho, width = y.shape
    kh, kw = tiled.shape[0], tiled.shape[1]
    c, w, dh, dw, top, left = geometry
    wo = width // c
    use_bias = bias.shape[0] > 0
    for i in range(n):
        for a in range(ho):
            out = y[i, a]
            out[:] = 0
            for ki in range(kh):
                r = a + ki * dh - top
                if r < 0 or r >= h:
                    continue
                for kj in range(kw):
                    offset = kj * dw - left
                    lo, hi = _span(wo, w, offset)
                    _tap(out, x[i, r], tiled[ki, kj], offset * c, lo * c, hi * c)
            if use_bias or relu:
                for j in range(width):
                    v = out[j] + bias[j] if use_bias else out[j]
                    out[j] = v if v > 0 or not relu else (v if v != v else 0)


@compiled.jit
def backward_rows(dy, x, tiled, relu_output, geometry, dkernel, dbias,
                  dx):  # pragma: no cover (compiled)
    """Adds the kernel gradient (kh, kw, C) and bias gradient (C,) of :func:`forward_rows`
    to ``dkernel`` and ``dbias`` (float64) and writes ``dx`` (N, H, W * C, or empty)."""
    n, h, _ = x.shape
    _, ho, width = dy.shape
    kh, kw = tiled.shape[0], tiled.shape[1]
    c, w, dh, dw, top, left = geometry
    wo = width // c
    relu = relu_output.shape[0] > 0
    need_dx = dx.shape[0] > 0
    g = np.empty(width, dtype=x.dtype)  # one row of dy, masked by the ReLU
    span = tiled.shape[2]
    dk = np.empty((kh, kw, span), dtype=x.dtype)  # one image's kernel gradient, per column
    db = np.empty(width, dtype=x.dtype)
    for i in range(n):
        dk[:] = 0
        db[:] = 0
        if need_dx:
            dx[i] = 0
        for a in range(ho):
            for j in range(width):
                v = dy[i, a, j]
                if relu:
                    v = v if relu_output[i, a, j] > 0 else v * 0  # NaN stays NaN
                g[j] = v
                db[j] += v
            for ki in range(kh):
                r = a + ki * dh - top
                if r < 0 or r >= h:
                    continue
                row = x[i, r]
                for kj in range(kw):
                    offset = kj * dw - left
                    lo, hi = _span(wo, w, offset)
                    wt, dwt = tiled[ki, kj], dk[ki, kj]
                    for j0 in range(lo * c, hi * c, span):
                        j1 = min(j0 + span, hi * c)
                        src, gs = row[j0 + offset * c:j1 + offset * c], g[j0:j1]
                        if need_dx:
                            dst = dx[i, r, j0 + offset * c:j1 + offset * c]
                            for j in range(j1 - j0):
                                dwt[j] += src[j] * gs[j]
                                dst[j] += gs[j] * wt[j]
                        else:
                            for j in range(j1 - j0):
                                dwt[j] += src[j] * gs[j]
        for b in range(wo):
            for k in range(c):
                dbias[k] += db[b * c + k]
        for ki in range(kh):
            for kj in range(kw):
                total, part = dkernel[ki, kj], dk[ki, kj]
                for b in range(span // c):
                    for k in range(c):
                        total[k] += part[b * c + k]


def geometry(x_shape: tuple[int, ...], dilation: tuple[int, int], pads: Any) -> Any:
    """The integers the kernels take: channels, width, dilation, top and left padding."""
    (dh, dw), ((top, _), (left, _)) = dilation, pads
    return np.array([x_shape[3], x_shape[2], dh, dw, top, left], dtype=np.int64)


SPAN = 512
"""Values of a row per step of the loops: a whole number of pixels (``SPAN // C``)."""


def applies(channels: int) -> bool:
    """Whether the row kernels are worth it: for 8 pixels or more per span (MobileNetV2's
    16-48 channels at 32x32). With fewer they gained nothing (96 channels) or lost (0.6
    against 0.9 ms at 64x8x8x144, the forward)."""
    return 8 * channels <= SPAN


def tiled(weights: Any) -> Any:
    """The weights (kh, kw, C) repeated for :data:`SPAN` values: (kh, kw, m * C)."""
    c = weights.shape[2]
    return np.ascontiguousarray(np.tile(weights, (1, 1, max(1, SPAN // c))))
