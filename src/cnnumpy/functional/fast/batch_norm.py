"""Batch normalization in few passes: training statistics, normalization and an optional
ReLU (or ReLU6) in two passes over the activations, its backward in two; and BN folded into
the convolution before it, for inference.

Training (``x`` of shape (rows, C), statistics per column):

* :func:`train_forward`: the mean and the biased variance (one pass: float64 sums of the
  values and their squares, shifted by the first row), then ``y = relu?(x * scale + shift)`` with
  ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale`` (a second pass that
  reads ``x`` and writes ``y``). NumPy's version takes seven passes and three temporaries.
  Nothing but ``x`` is kept for the backward: ``x_hat`` is recomputed there.
* :func:`train_backward`: one pass for both reductions (``sum(g)`` and ``sum(g * x_hat)``,
  ``g`` being ``dy`` masked by the ReLU where one is fused), one to write ``dx``.

On several threads each function is one call of :func:`cnnumpy.backend.run_together`, one
slice of rows per thread: a thread makes its slice's sums, waits for the others'
(:func:`cnnumpy.workers.meet`), adds up all of them in slice order (every thread the same
numbers) and makes its slice's second pass. That is one hand-over to the threads per
function instead of two, and no Python between the passes: paired training steps
(2026-12-07, AMD EPYC VM, two threads) ResNet-20 2.5-3.9 % faster at batch 32 and 64,
MobileNetV2 4-5 % at 32, with the same results to the bit.

Reference: :meth:`cnnumpy.layers.BatchNormalization.call` and ``call_backward`` (NumPy), then
:class:`cnnumpy.layers.ReLU`; checked by ``tests/functional/fast/test_batch_norm.py``
(float64 against the reference layers, and against PyTorch). Only compiled
(:mod:`~cnnumpy.functional.fast.compiled`); without Numba the layer runs its NumPy code.

Inference: :func:`fold_into_kernel` gives the kernel and bias of one convolution equal to a
convolution followed by BN with its moving statistics (checked by
``tests/test_batch_norm_fold.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy import backend, workers
from cnnumpy.functional.fast import compiled

NO_TOP = float("inf")
"""``top`` for a plain ReLU (no upper clip)."""
ENABLED = True
"""Use the compiled training passes (False: the layer's NumPy code; for A/B timings)."""
PARALLEL_MIN = 2**18
"""Arrays of at least this many values are cut into one slice of rows per thread, each pass
run on the library's threads. MobileNetV2's training step (alpha 0.35, batch 64, 32x32)
spent 135 of about 370 ms in its 52 BN layers' passes, on one thread. On two loaded cores
2**16 was slower than 2**20 (602 against 508 ms for that step); on two idle ones (Intel Xeon,
2026-12-06) 2**18 made ResNet-20's 28x28 training steps 2-4 % faster than 2**20 at batch 64
and 128 (its 14x14 and 7x7 stages then run on both threads) and left MobileNetV2's and the
32x32 ResNet-20's at batch 32 as they were."""
WIDE = 128
"""Up to ``WIDE // 8`` channels are processed as rows of ``WIDE`` values: ``m = WIDE // C``
rows of ``(rows, C)`` side by side, ``(rows / m, m * C)`` (a view; a smaller ``m`` that
divides ``rows`` if this one does not), the per-channel vectors tiled ``m`` times and the
per-column sums folded back. The loops over a row then vectorize better: at 64x32x32x8 the
backward's two passes took 0.6 against 2.3 ms, at 64x32x32x16 1.1 against 1.2 ms. From 24
channels on it gained less than the tiling cost at small sizes (measured up to 48)."""


@compiled.jit
def _total(sums, which, m, c):  # pragma: no cover (compiled)
    """Per channel: ``sums[:, which]`` added over parts in order, then its ``m`` groups of
    ``c`` columns added in order (float64)."""
    parts, _, width = sums.shape
    columns = sums[0, which].copy()
    for p in range(1, parts):
        for k in range(width):
            columns[k] += sums[p, which, k]
    out = columns[:c].copy()
    for g in range(1, m):
        for k in range(c):
            out[k] += columns[g * c + k]
    return out


@compiled.jit
def _tile(v, m, dtype):  # pragma: no cover (compiled)
    """``v`` (C values) repeated ``m`` times, as ``dtype``."""
    c = v.shape[0]
    out = np.empty(m * c, dtype)
    for g in range(m):
        out[g * c:(g + 1) * c] = v
    return out


@compiled.jit
def _forward_part(x, x0, m, n, gamma, beta, eps, relu, top, residual, added, sums, flags,
                  index, aborts, seen, y, mean, var, scale,
                  shift):  # pragma: no cover (compiled)
    """Part ``index`` of :func:`train_forward` (its rows of the widened ``x`` and ``y``):
    its sums of ``x - first`` and their squares into ``sums[index]`` (``first``: the batch's
    first row ``x0``, the shift of the one-pass sums); once every part has
    (:func:`cnnumpy.workers.meet`), the statistics from all of them, then its rows of ``y``
    (plus ``residual``'s, if ``added``, before the ReLU). Part 0 writes ``mean``, ``var``,
    ``scale`` and ``shift``. False if it stopped waiting (a part failed)."""
    rows, width = x.shape
    c = width // m
    first = _tile(x0.astype(np.float64), m, np.float64)
    s1 = np.zeros(width, np.float64)
    s2 = np.zeros(width, np.float64)
    for r in range(rows):
        for k in range(width):
            d = x[r, k] - first[k]
            s1[k] += d
            s2[k] += d * d
    sums[index, 0] = s1
    sums[index, 1] = s2
    if flags.shape[0] > 1 and not workers.meet(flags, index, aborts, seen):
        return False
    s1 = _total(sums, 0, m, c) / n
    s2 = _total(sums, 1, m, c) / n
    mu = first[:c] + s1
    sigma2 = np.maximum(s2 - s1 * s1, 0.0)
    sc = (gamma * (1 / np.sqrt(sigma2 + eps))).astype(x.dtype)
    sh = (beta.astype(np.float64) - mu * sc.astype(np.float64)).astype(x.dtype)
    scw, shw = _tile(sc, m, x.dtype), _tile(sh, m, x.dtype)
    for r in range(rows):
        for k in range(width):
            v = x[r, k] * scw[k] + shw[k]
            if added:
                v = v + residual[r, k]
            if relu:
                v = v if v > 0 else (v if v != v else 0)  # np.maximum keeps NaN
                v = v if v < top else top
            y[r, k] = v
    if index == 0:
        mean[:] = mu
        var[:] = sigma2
        scale[:] = sc
        shift[:] = sh
    return True


@compiled.jit
def _backward_part(dy, x, mean_c, scale_c, shift_c, relu, top, m, n, inv_std, more, two, y,
                   g_out, added, sums, flags, index, aborts, seen, dx, dgamma,
                   dbeta):  # pragma: no cover (compiled)
    """Part ``index`` of :func:`train_backward` (its rows of the widened arrays; ``mean_c``,
    ``scale_c`` and ``shift_c`` per channel): its ``sum(g)`` and ``sum(g * (x - mean))`` into
    ``sums[index]``, ``g`` being ``dy`` where the ReLU let ``y`` through (or ``dy``); once
    every part has, ``dx = scale * g + (p * (x - mean) + q)`` for its rows. Part 0 writes
    ``dgamma`` and ``dbeta``. False if it stopped waiting (a part failed). With ``added``
    (after :func:`train_forward` with a residual), ``dy`` is first ``(dy + more if two else
    dy) * (y > 0)``, ``y`` the forward's output, written to ``g_out`` (the residual's
    gradient)."""
    rows, width = x.shape
    c = width // m
    mean = _tile(mean_c.astype(x.dtype), m, x.dtype)
    scale, shift = _tile(scale_c, m, x.dtype), _tile(shift_c, m, x.dtype)
    sum_g = np.zeros(width, np.float64)
    sum_gx = np.zeros(width, np.float64)
    for r in range(rows):
        for k in range(width):
            xv = x[r, k]
            g = dy[r, k]
            if added:  # the sum's and the ReLU's gradient, as add_relu.backward makes it
                total = dy[r, k] + more[r, k] if two else dy[r, k]
                total = total if y[r, k] > 0 else total * 0  # NaN * 0 is NaN
                g_out[r, k] = total
                g = total
            if relu:
                z = xv * scale[k] + shift[k]
                g = g if (z > 0) & (z < top) else 0  # "&": no branch, the loop vectorizes
            sum_g[k] += g
            sum_gx[k] += g * (xv - mean[k])
    sums[index, 0] = sum_g
    sums[index, 1] = sum_gx
    if flags.shape[0] > 1 and not workers.meet(flags, index, aborts, seen):
        return False
    if added:
        dy = g_out
    total_g = _total(sums, 0, m, c)
    total_gx = _total(sums, 1, m, c) * inv_std  # sum(g * x_hat)
    minus_scale = -scale_c
    p = _tile((minus_scale * inv_std * total_gx / n).astype(x.dtype), m, x.dtype)
    q = _tile((minus_scale * total_g / n).astype(x.dtype), m, x.dtype)
    for r in range(rows):
        for k in range(width):
            xv = x[r, k]
            g = dy[r, k]
            if relu:
                z = xv * scale[k] + shift[k]
                g = g if (z > 0) & (z < top) else 0
            dx[r, k] = scale[k] * g + (p[k] * (xv - mean[k]) + q[k])
    if index == 0:
        dgamma[:] = total_gx
        dbeta[:] = total_g
    return True


_ONE = np.zeros(1, np.int64)


def _in_parts(part: Callable[[slice, int, Any, Any, int], bool], xw: Any) -> None:
    """``part(rows, index, flags, sums, seen)`` on one slice of ``xw``'s rows per thread,
    all at once (:func:`cnnumpy.backend.run_together`; one slice in all for fewer than
    :data:`PARALLEL_MIN` values), meeting in the middle; else (no threads free, or a part
    stopped waiting for another caller's failure) one part of all the rows. Raises what a
    part raised."""
    rows, width = xw.shape
    count = min(backend.get_num_threads() if xw.size >= PARALLEL_MIN else 1, rows)
    if count > 1:
        slices = backend.batch_slices(rows, count)
        flags = np.zeros(count, np.int64)
        sums = np.empty((count, 2, width), np.float64)
        seen = int(workers.ABORTS[0])  # before any part can fail
        done = backend.run_together(lambda k: part(slices[k], k, flags, sums, seen), count)
        if done is not None and all(done):
            return
    part(slice(0, rows), 0, _ONE, np.empty((1, 2, width), np.float64), 0)


def _widened(x: Any) -> tuple[Any, int]:
    """``x`` as ``m`` of its rows side by side (see :data:`WIDE`), and ``m``."""
    rows, c = x.shape
    m = max(1, min(rows, WIDE // c)) if 8 * c <= WIDE else 1
    while rows % m:
        m -= 1
    return x.reshape(rows // m, m * c), m


def usable(x: Any) -> bool:
    """Whether the compiled passes may run on ``x`` (a C-contiguous 2-D float array)."""
    return ENABLED and compiled.usable(x) and x.ndim == 2 and x.flags.c_contiguous


def train_forward(x: Any, gamma: Any, beta: Any, eps: float, relu: bool = False,
                  top: float = NO_TOP, residual: Any | None = None
                  ) -> tuple[Any, Any, Any, Any, Any]:
    """Normalize ``x`` with its batch statistics, scale, shift, add ``residual`` (if given:
    C-contiguous, of ``x``'s shape and dtype), then ReLU clipped at ``top`` if ``relu``.
    Returns ``(y, mean, var, scale, shift)``: ``mean`` and the biased ``var`` in float64,
    ``scale`` and ``shift`` in ``x``'s dtype (what the backward needs; the residual's
    gradient is the output's).

    Shape:
        x, y, residual: (rows, C); gamma, beta, mean, var, scale, shift: (C,).
    """
    xw, m = _widened(x)
    rw = xw if residual is None else residual.reshape(xw.shape)
    c = x.shape[1]
    y = np.empty_like(x)
    yw = y.reshape(xw.shape)
    mean, var = np.empty(c), np.empty(c)
    scale, shift = np.empty(c, x.dtype), np.empty(c, x.dtype)
    t = x.dtype.type(top)
    _in_parts(lambda rows, k, flags, sums, seen: _forward_part(
        xw[rows], x[0], m, x.shape[0], gamma, beta, eps, relu, t, rw[rows], residual is not None,
        sums, flags, k, workers.ABORTS, seen, yw[rows], mean, var, scale, shift), xw)
    return y, mean, var, scale, shift


def train_backward(dy: Any, x: Any, mean: Any, var: Any, eps: float, scale: Any, shift: Any,
                   relu: bool = False, top: float = NO_TOP, more: Any | None = None,
                   y: Any | None = None) -> tuple[Any, Any, Any, Any]:
    """The gradients of :func:`train_forward`'s output from ``dy``: returns ``(dx, dgamma,
    dbeta, g)``, ``dx = gamma/std * (g - mean(g) - x_hat * mean(g * x_hat))``. After a
    forward with a residual, pass its output ``y`` (and ``more``, a second gradient of it to
    add to ``dy``): ``g = (dy + more) * (y > 0)``, the residual's gradient (else None).

    Shape:
        dy, more, x, y, dx, g: (rows, C); the rest (C,).
    """
    xw, m = _widened(x)
    dyw = np.ascontiguousarray(dy, dtype=x.dtype).reshape(xw.shape)
    added = y is not None
    g = np.empty_like(x) if added else None
    yw = dyw if y is None else y.reshape(xw.shape)
    mw = dyw if more is None else np.ascontiguousarray(more, dtype=x.dtype).reshape(xw.shape)
    gw = dyw if g is None else g.reshape(xw.shape)
    inv_std = 1 / np.sqrt(var + eps)
    t = x.dtype.type(top)
    dx = np.empty_like(x)
    dxw = dx.reshape(xw.shape)
    dgamma, dbeta = np.empty_like(scale), np.empty_like(scale)
    _in_parts(lambda rows, k, flags, sums, seen: _backward_part(
        dyw[rows], xw[rows], mean, scale, shift, relu, t, m, x.shape[0], inv_std, mw[rows],
        more is not None, yw[rows], gw[rows], added, sums, flags, k, workers.ABORTS, seen,
        dxw[rows], dgamma, dbeta), xw)
    return dx, dgamma, dbeta, g


def fold_into_kernel(kernel: Any, bias: Any | None, gamma: Any, beta: Any, mean: Any,
                     var: Any, eps: float) -> tuple[Any, Any]:
    """Kernel and bias of ``BN(conv(x, kernel) + bias)`` with BN's moving statistics as one
    convolution: ``kernel * s`` and ``(bias - mean) * s + beta``, ``s = gamma/sqrt(var+eps)``
    per output channel (the kernel's last axis; for a depthwise kernel (kh, kw, C, M), the
    output channel ``c * M + m``).

    Shape:
        kernel: (..., F) or (kh, kw, C, M) with C * M = F; bias, gamma, beta, mean, var: (F,).
    """
    s = gamma / np.sqrt(var + kernel.dtype.type(eps))
    folded = kernel * s.reshape(kernel.shape[-2:] if kernel.shape[-1] != s.size else -1)
    b = -mean if bias is None else bias - mean
    return folded.astype(kernel.dtype, copy=False), (b * s + beta).astype(kernel.dtype)
