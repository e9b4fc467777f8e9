"""Batch normalization in few passes: training statistics, normalization and an optional
ReLU (or ReLU6) in three passes over the activations, its backward in two; and BN folded into
the convolution before it, for inference.

Training (``x`` of shape (rows, C), statistics per column):

* :func:`train_forward`: the mean (one pass), the biased variance from centred squares (a
  second pass, summed in float64), then ``y = relu?(x * scale + shift)`` with
  ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale`` (a third pass that
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

from cnnumpy.functional.fast import compiled

NO_TOP = float("inf")
"""``top`` for a plain ReLU (no upper clip)."""
ENABLED = True
"""Use the compiled training passes (False: the layer's NumPy code; for A/B timings)."""


@compiled.jit
def _stats(x):  # pragma: no cover (compiled)
    rows, c = x.shape
    total = np.zeros(c, np.float64)
    for r in range(rows):
        for k in range(c):
            total[k] += x[r, k]
    mean = total / rows
    sq = np.zeros(c, np.float64)
    for r in range(rows):
        for k in range(c):
            d = x[r, k] - mean[k]
            sq[k] += d * d
    return mean, sq / rows


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
def _grad_sums(dy, x, mean, inv_std, scale, shift, relu, top):  # pragma: no cover (compiled)
    rows, c = x.shape
    sum_g = np.zeros(c, np.float64)
    sum_gx = np.zeros(c, np.float64)
    for r in range(rows):
        for k in range(c):
            g = dy[r, k]
            if relu:
                z = x[r, k] * scale[k] + shift[k]
                g = g if (z > 0 and z < top) else 0
            sum_g[k] += g
            sum_gx[k] += g * ((x[r, k] - mean[k]) * inv_std[k])
    return sum_g, sum_gx


@compiled.jit
def _dx(dy, x, mean, inv_std, scale, shift, relu, top, a, b, c_, out):  # pragma: no cover
    rows, c = x.shape
    for r in range(rows):
        for k in range(c):
            g = dy[r, k]
            if relu:
                z = x[r, k] * scale[k] + shift[k]
                g = g if (z > 0 and z < top) else 0
            out[r, k] = a[k] * (g - b[k] - (x[r, k] - mean[k]) * inv_std[k] * c_[k])


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
    mean, var = _stats(x)
    inv_std = 1 / np.sqrt(var + eps)
    scale = (gamma * inv_std).astype(x.dtype)
    shift = (beta - mean * scale).astype(x.dtype)
    y = np.empty_like(x)
    _apply(x, scale, shift, relu, x.dtype.type(top), y)
    return y, mean, var, scale, shift


def train_backward(dy: Any, x: Any, mean: Any, var: Any, eps: float, scale: Any, shift: Any,
                   relu: bool = False, top: float = NO_TOP) -> tuple[Any, Any, Any]:
    """The gradients of :func:`train_forward`'s output ``y`` from ``dy``: returns
    ``(dx, dgamma, dbeta)``, ``dx = gamma/std * (g - mean(g) - x_hat * mean(g * x_hat))``.

    Shape:
        dy, x, dx: (rows, C); the rest (C,).
    """
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
    mean_x = mean.astype(x.dtype)
    t = x.dtype.type(top)
    sum_g, sum_gx = _grad_sums(dy, x, mean_x, inv_std, scale, shift, relu, t)
    n = x.shape[0]
    dx = np.empty_like(x)
    _dx(dy, x, mean_x, inv_std, scale, shift, relu, t, scale, (sum_g / n).astype(x.dtype),
        (sum_gx / n).astype(x.dtype), dx)
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
