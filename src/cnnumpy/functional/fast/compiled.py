"""Compiled kernels for passes that NumPy can only make as several whole-array steps.

Used when `Numba <https://numba.pydata.org>`_ is installed (``pip install cnnumpy[fast]``),
:data:`ENABLED` is true and the arrays are NumPy arrays; otherwise every caller runs its
pure-NumPy version, which the tests check these against. Each kernel is one loop nest over a
chunk of images that reads its input once and writes its output once, where NumPy makes one
pass over the chunk per arithmetic step (about 20 chunk-sized reads and writes for the
Winograd input transform). The kernels release the interpreter lock, so the library's threads
run them side by side; they are compiled on first use and cached on disk.

Here: the switch, :func:`bias_relu` (a convolution's bias and ReLU in one pass: NumPy's two
passes took 35 us per CIFAR-like first-layer image, this one 3.5) and :func:`relu_grad`.
Max pooling of window-order blocks, and its window gradients, are in
:mod:`cnnumpy.functional.fast.compiled_pool`.
The Winograd transforms are in :mod:`cnnumpy.functional.fast.compiled_winograd`; the two
``winograd_*`` functions here choose between them and the NumPy versions.

Must equal: the NumPy line each kernel's docstring gives (``out + bias`` then
:func:`cnnumpy.functional.activations.relu`; :func:`cnnumpy.functional.pooling.max_of`; the
Winograd modules' NumPy transforms). Checked by ``tests/functional/fast/test_compiled.py``; the
switch by ``tests/functional/fast/test_compiled_switch.py``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnumpy.functional import pooling

REQUESTED = os.environ.get("CNNUMPY_COMPILED", "1") != "0"
"""False when the environment sets ``CNNUMPY_COMPILED=0``: Numba is then not even imported
(importing it takes about 0.15 s)."""


def _import_numba() -> Any:
    if not REQUESTED:
        return None
    try:
        import numba
    except ImportError:  # the pure-NumPy paths run instead
        return None
    return numba


numba: Any = _import_numba()

AVAILABLE = numba is not None
"""Whether Numba was imported: installed, and not switched off by the environment."""

ENABLED = AVAILABLE
"""Use the compiled kernels (set this to False, or ``CNNUMPY_COMPILED=0`` in the environment
before importing cnnumpy, for the pure-NumPy paths)."""


def usable(*arrays: Any) -> bool:
    """Whether the compiled kernels may run on these arrays (enabled, NumPy, float)."""
    return ENABLED and all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays)


def jit(fn: Any) -> Any:
    """``fn`` compiled (without the interpreter lock, cached on disk) when Numba is here."""
    return numba.njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


def jit_numpy_errors(fn: Any) -> Any:
    """:func:`jit` with NumPy's float errors: a division by zero gives inf or nan, as in
    NumPy, instead of raising, so the compiler may vectorize loops that divide (Adam's step
    over 52,705 float32 elements: 22 us against 172 us with Python's errors; NumPy 73 us)."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fn) if AVAILABLE else fn


@jit
def _bias_relu(out, bias, relu):  # pragma: no cover (compiled)
    rows, f = out.shape
    for r in range(rows):
        o = out[r]
        if relu:
            for k in range(f):
                v = o[k] + bias[k]
                o[k] = v if v > 0 else (v if v != v else 0)  # np.maximum keeps NaN
        else:
            for k in range(f):
                o[k] += bias[k]


def bias_relu(out: Any, bias: Any | None, relu: bool) -> None:
    """``out += bias`` (if given), then ``out = max(out, 0)`` (if ``relu``), in place.

    Shape:
        out: (rows, F), C-contiguous; bias: (F,).
    """
    if bias is None:
        bias = np.zeros(out.shape[1], dtype=out.dtype)
    _bias_relu(out, bias.astype(out.dtype, copy=False), relu)


@jit
def _relu_grad(dy, y, out):  # pragma: no cover (compiled)
    for r in range(dy.shape[0]):
        for k in range(dy.shape[1]):
            g = dy[r, k]
            out[r, k] = g if y[r, k] > 0 else g * 0  # as dy * (y > 0): NaN * 0 is NaN


def relu_grad(dy: Any, y: Any) -> Any:
    """``dy * (y > 0)``: the gradient through a ReLU whose output was ``y``, in one pass.

    Shape:
        dy, y: (rows, F) -> (rows, F).
    """
    out = np.empty(dy.shape, dtype=dy.dtype)
    _relu_grad(np.ascontiguousarray(dy), np.ascontiguousarray(y), out)
    return out


def winograd_input_gradient(kernel: Any, adjoint: Any, dv: Any, pads: Any,
                            tiles_hw: tuple[int, int], out: Any) -> None:
    """``out[...] =`` the unpadded part of ``adjoint(dv, padded shape, tiles_hw)`` (a NumPy
    input-transform adjoint), by the compiled ``kernel`` where it applies.

    Shape:
        dv: (values, N * Ht * Wt, C); out: (N, H, W, C).
    """
    if usable(dv, out) and out.flags.c_contiguous:
        kernel(dv, pads, tiles_hw, out)
        return
    (top, bottom), (left, right) = pads
    n, h, w, c = out.shape
    dxpad = adjoint(dv, (n, h + top + bottom, w + left + right, c), tiles_hw)
    out[...] = dxpad[:, top:top + h, left:left + w]


def winograd_output_pool(kernel: Any, transform: Any, m: Any, out: Any,
                         first: Any | None) -> None:
    """:func:`cnnumpy.functional.pooling.max_of` of ``transform(m)``'s four outputs per tile
    into ``out`` (and ``first``), by the compiled ``kernel`` where it applies.

    Shape:
        m: (values, T, F); out, first: (T, F).
    """
    if usable(m, out) and out.flags.c_contiguous and (
            first is None or first.flags.c_contiguous):
        kernel(m, out, first)
        return
    pooling.max_of(transform(m), out, first)
