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

Reference: :meth:`cnnumpy.layers.BatchNormalization.call` and ``call_backward`` (NumPy), then
:class:`cnnumpy.layers.ReLU`; checked by ``tests/functional/fast/test_batch_norm.py``
(float64 against the reference layers, and against PyTorch). Only compiled
(:mod:`~cnnumpy.functional.fast.compiled`); without Numba the layer runs its NumPy code.

Inference: :func:`fold_into_kernel` gives the kernel and bias of one convolution equal to a
convolution followed by BN with its moving statistics (checked by
``tests/test_batch_norm_fold.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
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
def _shifted_sums(x, shift):  # pragma: no cover (compiled)
    """Per column, in float64: ``sum(x - shift)`` and ``sum((x - shift)**2)``."""
    rows, c = x.shape
    s1 = np.zeros(c, np.float64)
    s2 = np.zeros(c, np.float64)
    for r in range(rows):
        for k in range(c):
            d = x[r, k] - shift[k]
            s1[k] += d
            s2[k] += d * d
    return s1, s2


@compiled.jit
def _apply(x, scale, shift, relu, top, out):  # pragma: no cover (compiled)
    rows, c = x.shape
    for r in range(rows):
        for k in range(c):
            v = x[r, k] * scale[k] + shift[k]
            if relu:
                v = v if v > 0 else (v if v != v else 0)
                v = v if v < top else top
            out[r, k] = v


@compiled.jit
def _grad_sums(dy, x, mean, scale, shift, relu, top):  # pragma: no cover (compiled)
    """Per column, in float64: ``sum(g)`` and ``sum(g * (x - mean))``, ``g`` being ``dy``
    where ``0 < x * scale + shift < top`` (or everywhere without ``relu``)."""
    rows, c = x.shape
    sum_g = np.zeros(c, np.float64)
    sum_gx = np.zeros(c, np.float64)
    for r in range(rows):
        for k in range(c):
            xv = x[r, k]
            g = dy[r, k]
            if relu:
                z = xv * scale[k] + shift[k]
                g = g if (z > 0) & (z < top) else 0  # "&": no branch, the loop vectorizes
            sum_g[k] += g
            sum_gx[k] += g * (xv - mean[k])
    return sum_g, sum_gx


@compiled.jit
def _dx(dy, x, mean, scale, shift, relu, top, a, p, q, out):  # pragma: no cover (compiled)
    """``out = a * g + (p * (x - mean) + q)``, ``g`` as in :func:`_grad_sums`."""
    rows, c = x.shape
    for r in range(rows):
        for k in range(c):
            xv = x[r, k]
            g = dy[r, k]
            if relu:
                z = xv * scale[k] + shift[k]
                g = g if (z > 0) & (z < top) else 0
            out[r, k] = a[k] * g + (p[k] * (xv - mean[k]) + q[k])


def _row_parts(x: Any) -> list[slice]:
    """Slices of ``x``'s rows, one per thread (one in all for fewer than
    :data:`PARALLEL_MIN` values)."""
    count = backend.get_num_threads() if x.size >= PARALLEL_MIN else 1
    return backend.batch_slices(x.shape[0], max(1, min(count, x.shape[0])))


def _summed(parts: list[Any]) -> Any:
    """Per-slice sums added in slice order."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _widened(x: Any) -> tuple[Any, int]:
    """``x`` as ``m`` of its rows side by side (see :data:`WIDE`), and ``m``."""
    rows, c = x.shape
    m = max(1, min(rows, WIDE // c)) if 8 * c <= WIDE else 1
    while rows % m:
        m -= 1
    return x.reshape(rows // m, m * c), m


def _folded(v: Any, m: int) -> Any:
    """Per-column sums of a widened array folded back to one per channel (float64)."""
    return v if m == 1 else v.reshape(m, -1).sum(axis=0)


def _tiled(v: Any, m: int) -> Any:
    """A per-channel vector for a widened array: ``v`` repeated ``m`` times."""
    return v if m == 1 else np.tile(v, m)


def _stats(x: Any, m: int) -> tuple[Any, Any]:
    """The mean and biased variance of each channel (float64) of ``x`` widened by ``m`` in
    one pass: sums of ``x`` and its squares shifted by the first row's values (so the
    variance loses no digits to a mean far from 0; within 1e-12 of the centred two-pass
    sums)."""
    n = x.shape[0] * m
    shift = x[0, :x.shape[1] // m].astype(np.float64)
    tiled = _tiled(shift, m)
    sums = backend.parallel_map(lambda p: _shifted_sums(x[p], tiled), _row_parts(x))
    s1 = _folded(_summed([s1 for s1, _ in sums]), m) / n
    s2 = _folded(_summed([s2 for _, s2 in sums]), m) / n
    return shift + s1, np.maximum(s2 - s1 * s1, 0)


def usable(x: Any) -> bool:
    """Whether the compiled passes may run on ``x`` (a C-contiguous 2-D float array)."""
    return ENABLED and compiled.usable(x) and x.ndim == 2 and x.flags.c_contiguous


def train_forward(x: Any, gamma: Any, beta: Any, eps: float, relu: bool = False,
                  top: float = NO_TOP) -> tuple[Any, Any, Any, Any, Any]:
    """Normalize ``x`` with its batch statistics, scale, shift, then ReLU clipped at ``top``
    if ``relu``. Returns ``(y, mean, var, scale, shift)``: ``mean`` and the biased ``var`` in
    float64, ``scale`` and ``shift`` in ``x``'s dtype (what the backward needs).

    Shape:
        x, y: (rows, C); gamma, beta, mean, var, scale, shift: (C,).
    """
    xw, m = _widened(x)
    mean, var = _stats(xw, m)
    inv_std = 1 / np.sqrt(var + eps)
    scale = (gamma * inv_std).astype(x.dtype)
    shift = (beta - mean * scale).astype(x.dtype)
    y = np.empty_like(x)
    yw = y.reshape(xw.shape)
    sc, sh, t = _tiled(scale, m), _tiled(shift, m), x.dtype.type(top)
    backend.parallel_map(lambda p: _apply(xw[p], sc, sh, relu, t, yw[p]), _row_parts(xw))
    return y, mean, var, scale, shift


def train_backward(dy: Any, x: Any, mean: Any, var: Any, eps: float, scale: Any, shift: Any,
                   relu: bool = False, top: float = NO_TOP) -> tuple[Any, Any, Any]:
    """The gradients of :func:`train_forward`'s output ``y`` from ``dy``: returns
    ``(dx, dgamma, dbeta)``, ``dx = gamma/std * (g - mean(g) - x_hat * mean(g * x_hat))``.

    Shape:
        dy, x, dx: (rows, C); the rest (C,).
    """
    xw, m = _widened(x)
    dyw = np.ascontiguousarray(dy, dtype=x.dtype).reshape(xw.shape)
    inv_std = 1 / np.sqrt(var + eps)
    mean_w = _tiled(mean.astype(x.dtype), m)
    sc, sh, t = _tiled(scale, m), _tiled(shift, m), x.dtype.type(top)
    parts = _row_parts(xw)
    sums = backend.parallel_map(
        lambda r: _grad_sums(dyw[r], xw[r], mean_w, sc, sh, relu, t), parts)
    sum_g = _folded(_summed([g for g, _ in sums]), m)
    sum_gx = _folded(_summed([gx for _, gx in sums]), m) * inv_std  # sum(g * x_hat)
    n = x.shape[0]
    # dx = scale * (g - sum_g / n - x_hat * sum_gx / n), x_hat = (x - mean) * inv_std
    p = _tiled((-scale * inv_std * sum_gx / n).astype(x.dtype), m)
    q = _tiled((-scale * sum_g / n).astype(x.dtype), m)
    dx = np.empty_like(x)
    dxw = dx.reshape(xw.shape)
    backend.parallel_map(lambda r: _dx(dyw[r], xw[r], mean_w, sc, sh, relu, t, sc, p, q,
                                       dxw[r]), parts)
    return dx, sum_gx.astype(x.dtype), sum_g.astype(x.dtype)


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
