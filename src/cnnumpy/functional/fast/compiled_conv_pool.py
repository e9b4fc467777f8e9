"""Compiled backward pass of a stride-1 convolution before max pooling, from the maxima.

Only the maximum of each pooling window passes its gradient back, so each pooled output's
gradient ``g`` (for filter f, its maximum at window offset (di, dj)) reaches the kernel and
the input through that one convolution output: the kernel's gradient for f gains ``g``
times the output's receptive field, and the input gradient gains ``g`` times f's kernel
there. The NumPy path (:func:`cnnumpy.functional.fast.conv_pool.conv2d_maxpool_backward`)
multiplies whole window-order blocks instead, three quarters of them zeros for 2x2 windows,
gathers the patches again for the kernel's gradient and adds the input gradient back one
kernel tap at a time. This kernel reads each window's rows of the input once, where they
are, and writes the input gradient once per window.

So that its inner loops run over whole rows of a window's receptive field
((kw + pw - 1) * C contiguous values) the kernel is placed at each column offset dj of the
field (:func:`wide_taps`), and the kernel gradient is summed in that form, then folded back
(:func:`fold`). One 8-channel 3x3 layer (16 filters, 2x2 pooling, 128 images, one thread):
1.9 ms against 3.0-4.2 for the NumPy path. With more channels the vector loops lose to the
NumPy path's matrix products (12 channels and 32 filters: 5.3 against 4.6 ms; 32 and 32:
9.2 against 7.4), hence :data:`MAX_CHANNELS`.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` then
:func:`cnnumpy.functional.pooling.max_pool2d_forward`, backward (within float rounding).
Checked by ``tests/functional/fast/test_compiled_conv_pool.py``
(``test_backward_matches_the_naive_convolution_and_pool``, ``test_backward_matches_numpy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled
from cnnumpy.functional.im2col import Pads, _pad

MAX_CHANNELS = 8
"""The kernel runs for convolutions from at most this many input channels."""

MIN_IMAGES_PER_THREAD = 16
"""Smaller batches run on one thread. A/B of the prototype's model's training steps, two
threads against one, with the executor's threads: 17-24 % slower at batch 32 and 64 (a
helper thread here often took longer to wake than the other needed for half the batch), 18 %
faster at 256. With the spinning threads of :mod:`cnnumpy.workers` (a hand-off in a few
microseconds), 16 against 64 (AMD EPYC, 2026-12-06): 1.07x at batch 32, 1.03x at 64, even at
256; LeNet-like and CIFAR-like even."""


def applies(x: Any, kernel: Any, strides: tuple[int, int], dilation: tuple[int, int]) -> bool:
    """Whether :func:`backward` computes this convolution's backward pass."""
    return (compiled.usable(x, kernel) and kernel.shape[2] <= MAX_CHANNELS
            and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1))


@compiled.jit
def _backward(xrows, dy, first, offsets, taps, ph, pw, kh, c, dtaps,
              dxrows):  # pragma: no cover (compiled)
    n, h2, w2, f_count = dy.shape
    seg = taps.shape[2] // kh  # a row of the receptive field: (kw + pw - 1) * c values
    rh = kh + ph - 1
    field = np.empty(rh * seg, dtype=dtaps.dtype)  # one window's input gradient
    need_dx = dxrows.shape[0] > 0
    row = np.uint64(seg)  # unsigned indices: no wraparound checks, so the loops vectorize
    block = np.uint64(kh * seg)
    for i in range(n):
        for a in range(h2):
            for b in range(w2):
                col = np.uint64(b * pw * c)
                if need_dx:
                    field[:] = 0
                for f in range(f_count):
                    g = dy[i, a, b, f]
                    k = first[i, a, b, f]
                    di, dj = offsets[k, 0], offsets[k, 1]
                    dk = dtaps[f, dj]
                    for t in range(kh):
                        x_row = xrows[i, a * ph + di + t]
                        base = np.uint64(t) * row
                        for q in range(row):
                            dk[base + q] += g * x_row[col + q]
                    if need_dx:
                        tap = taps[f, dj]
                        base = np.uint64(di) * row
                        for q in range(block):
                            field[base + q] += g * tap[q]
                if need_dx:
                    for u in range(rh):
                        dx_row = dxrows[i, a * ph + u]
                        base = np.uint64(u) * row
                        for q in range(row):
                            dx_row[col + q] += field[base + q]


def wide_taps(kernel: Any, pw: int) -> Any:
    """Each filter of the kernel placed at each column offset of a pooling window's receptive
    field, zeros elsewhere, one row of the field after another.

    Shape:
        kernel: (kh, kw, C, F) -> (F, pw, kh * (kw + pw - 1) * C).
    """
    kh, kw, c, f = kernel.shape
    wide = np.zeros((f, pw, kh, kw + pw - 1, c), dtype=kernel.dtype)
    for dj in range(pw):
        wide[:, dj, :, dj:dj + kw] = kernel.transpose(3, 0, 1, 2)
    return wide.reshape(f, pw, -1)


def fold(dwide: Any, kernel_shape: tuple[int, ...]) -> Any:
    """The kernel's gradient from its gradient in :func:`wide_taps`'s form (the adjoint).

    Shape:
        dwide: (F, pw, kh * (kw + pw - 1) * C) -> kernel_shape = (kh, kw, C, F).
    """
    kh, kw, c, f = kernel_shape
    pw = dwide.shape[1]
    wide = dwide.reshape(f, pw, kh, kw + pw - 1, c)
    dkernel = np.zeros((f, kh, kw, c), dtype=dwide.dtype)
    for dj in range(pw):
        dkernel += wide[:, dj, :, dj:dj + kw]
    return dkernel.transpose(1, 2, 3, 0)


def backward(dy: Any, x: Any, kernel: Any, pads: Pads, pool: tuple[int, int], first: Any,
             has_bias: bool, need_dx: bool) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dkernel, dbias)`` of a stride-1 convolution (no dilation) before max
    pooling with windows ``pool`` (stride ``pool``), where ``first`` holds each pooled
    output's window offset of its maximum (row-major); one slice of the batch per thread.
    ``dx`` is None unless ``need_dx``, ``dbias`` None without a bias.

    Shape:
        dy, first: (N, H2, W2, F); x: (N, H, W, C); kernel: (kh, kw, C, F);
        dx: (N, H, W, C); dkernel: (kh, kw, C, F); dbias: (F,).
    """
    (ph, pw), (kh, _, c, f) = pool, kernel.shape
    (top, _), (left, _) = pads
    n, h, w, _ = x.shape
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    first = np.ascontiguousarray(first)
    taps = wide_taps(kernel, pw)
    offsets = np.array([divmod(k, pw) for k in range(ph * pw)], dtype=np.int64)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    padded = any(pads[0]) or any(pads[1])

    def work(part: slice) -> tuple[Any, Any]:
        xpad = _pad(x[part], pads)
        count, hp, wp, _ = xpad.shape
        dtaps = np.zeros(taps.shape, dtype=x.dtype)
        if dx is not None and not padded:  # straight into dx
            dxpad = dx[part]
            dxpad[...] = 0
        else:
            dxpad = np.zeros(xpad.shape if need_dx else (0, hp, wp, c), dtype=x.dtype)
        _backward(xpad.reshape(count, hp, -1), dy[part], first[part], offsets, taps, ph, pw,
                  kh, c, dtaps, dxpad.reshape(-1, hp, wp * c))
        if dx is not None and padded:
            dx[part] = dxpad[:, top:top + h, left:left + w]
        return dtaps, (backend.column_sums(dy[part].reshape(-1, f)) if has_bias else None)

    parts = backend.batch_slices(n, min(n // MIN_IMAGES_PER_THREAD or 1,
                                        backend.get_num_threads()))
    dtaps, dbias = conv.sum_in_order(backend.parallel_map(work, parts), has_bias)
    return dx, fold(dtaps, kernel.shape), dbias
