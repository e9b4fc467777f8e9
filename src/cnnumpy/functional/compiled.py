"""Compiled kernels for passes that NumPy can only make as several whole-array steps.

Used when `Numba <https://numba.pydata.org>`_ is installed (``pip install cnnumpy[fast]``),
:data:`ENABLED` is true and the arrays are NumPy arrays; otherwise every caller runs its
pure-NumPy version, which the tests check these against. Each kernel is one loop nest over a
chunk of images that reads its input once and writes its output once, where NumPy makes one
pass over the chunk per arithmetic step (about 20 chunk-sized reads and writes for the
Winograd input transform). The kernels release the interpreter lock, so the library's threads
run them side by side; they are compiled on first use and cached on disk.

The arithmetic is the NumPy versions' in the same order, so the forward results are the same
to the bit; the input transform's adjoint adds the overlapping tiles in another order.

Winograd F(2x2, 3x3) (:mod:`cnnumpy.functional.winograd` gives the layouts):

* :func:`winograd3_input`: ``B^T d B`` of every input tile of a padded chunk;
* :func:`winograd3_input_adjoint`: ``B dV B^T`` added back into the unpadded input gradient;
* :func:`winograd3_output_pool`: ``A^T M A`` and the 2x2 max pooling of each tile's outputs.

Tried and left to NumPy: the pooled gradient through ``A dY A^T`` (16 output planes written
per element ran 1.8x slower than NumPy's whole-plane passes).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

try:
    import numba
except ImportError:  # the pure-NumPy paths run instead
    numba = None

AVAILABLE = numba is not None
"""Whether Numba could be imported."""

ENABLED = AVAILABLE and os.environ.get("CNNUMPY_COMPILED", "1") != "0"
"""Use the compiled kernels (set ``CNNUMPY_COMPILED=0`` in the environment, or this to False,
for the pure-NumPy paths)."""


def usable(*arrays: Any) -> bool:
    """Whether the compiled kernels may run on these arrays (enabled, NumPy, float)."""
    return ENABLED and all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays)


def _jit(fn: Any) -> Any:
    return numba.njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


@_jit
def _input_tiles(xpad, ht, wt, v):  # pragma: no cover (compiled)
    n, c = xpad.shape[0], xpad.shape[3]
    z = np.empty((4, 4, c), dtype=xpad.dtype)
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                for a in range(4):  # columns first, as the NumPy version
                    row = xpad[i, 2 * t + a]
                    for k in range(c):
                        x0, x1 = row[2 * s, k], row[2 * s + 1, k]
                        x2, x3 = row[2 * s + 2, k], row[2 * s + 3, k]
                        z[a, 0, k] = x0 - x2
                        z[a, 1, k] = x1 + x2
                        z[a, 2, k] = x2 - x1
                        z[a, 3, k] = x1 - x3
                for b in range(4):
                    for k in range(c):
                        r0, r1, r2, r3 = z[0, b, k], z[1, b, k], z[2, b, k], z[3, b, k]
                        v[b, tile, k] = r0 - r2
                        v[4 + b, tile, k] = r1 + r2
                        v[8 + b, tile, k] = r2 - r1
                        v[12 + b, tile, k] = r1 - r3


def winograd3_input(xpad: Any, tiles_hw: tuple[int, int]) -> Any:
    """:func:`cnnumpy.functional.winograd.input_transform`.

    Shape:
        xpad: (N, Hp, Wp, C) -> (16, N * Ht * Wt, C).
    """
    v = np.empty((16, xpad.shape[0] * tiles_hw[0] * tiles_hw[1], xpad.shape[3]),
                 dtype=xpad.dtype)
    _input_tiles(np.ascontiguousarray(xpad), tiles_hw[0], tiles_hw[1], v)
    return v


@_jit
def _input_tiles_adjoint(dv, top, left, ht, wt, dx):  # pragma: no cover (compiled)
    n, h, w, c = dx.shape
    dz = np.empty((4, 4, c), dtype=dx.dtype)
    dx[...] = 0
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                for b in range(4):  # B dV: rows of each column b
                    for k in range(c):
                        v0, v1 = dv[b, tile, k], dv[4 + b, tile, k]
                        v2, v3 = dv[8 + b, tile, k], dv[12 + b, tile, k]
                        dz[0, b, k] = v0
                        dz[1, b, k] = v1 - v2 + v3
                        dz[2, b, k] = v1 + v2 - v0
                        dz[3, b, k] = -v3
                for a in range(4):  # (B dV) B^T: columns of each row a, added into dx
                    r = 2 * t + a - top
                    if r < 0 or r >= h:
                        continue
                    for b in range(4):
                        q = 2 * s + b - left
                        if q < 0 or q >= w:
                            continue
                        for k in range(c):
                            z0, z1, z2, z3 = dz[a, 0, k], dz[a, 1, k], dz[a, 2, k], dz[a, 3, k]
                            if b == 0:
                                dx[i, r, q, k] += z0
                            elif b == 1:
                                dx[i, r, q, k] += z1 - z2 + z3
                            elif b == 2:
                                dx[i, r, q, k] += z1 + z2 - z0
                            else:
                                dx[i, r, q, k] -= z3


def winograd3_input_adjoint(dv: Any, pads: Any, tiles_hw: tuple[int, int], out: Any) -> None:
    """Write into ``out`` the gradient of :func:`winograd3_input`'s ``x`` from that of its
    result (:func:`cnnumpy.functional.winograd.input_transform_adjoint`, cropped).

    Shape:
        dv: (16, N * Ht * Wt, C); out: (N, H, W, C), C-contiguous.
    """
    (top, _), (left, _) = pads
    _input_tiles_adjoint(dv, top, left, tiles_hw[0], tiles_hw[1], out)


@_jit
def _output_pool(m, out, first, keep_first):  # pragma: no cover (compiled)
    t_count, f = out.shape
    for t in range(t_count):
        for k in range(f):
            m0, m1, m2, m3 = m[0, t, k], m[1, t, k], m[2, t, k], m[3, t, k]
            m4, m5, m6, m7 = m[4, t, k], m[5, t, k], m[6, t, k], m[7, t, k]
            m8, m9, m10, m11 = m[8, t, k], m[9, t, k], m[10, t, k], m[11, t, k]
            m12, m13, m14, m15 = m[12, t, k], m[13, t, k], m[14, t, k], m[15, t, k]
            p00, p01, p02, p03 = m0 + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11
            p10, p11, p12, p13 = m4 - m8 - m12, m5 - m9 - m13, m6 - m10 - m14, m7 - m11 - m15
            # the window's four outputs in row-major order; np.maximum's NaN propagation,
            # ties keep the first
            best, at = p00 + p01 + p02, 0
            y = p01 - p02 - p03
            at = 1 if y > best else at
            best = y if (y > best or y != y) else best
            y = p10 + p11 + p12
            at = 2 if y > best else at
            best = y if (y > best or y != y) else best
            y = p11 - p12 - p13
            at = 3 if y > best else at
            best = y if (y > best or y != y) else best
            out[t, k] = best
            if keep_first:
                first[t, k] = at


def winograd3_output_pool(m: Any, out: Any, first: Any | None) -> None:
    """``out = max`` over each tile's four outputs of
    :func:`cnnumpy.functional.winograd.output_transform` (and ``first``, if given, the index
    of the first maximum), as :func:`cnnumpy.functional.pooling.max_of` of them.

    Shape:
        m: (16, T, F); out, first: (T, F), C-contiguous.
    """
    keep = first is not None
    _output_pool(m, out, first if keep else np.empty((1, 1), dtype=np.uint8), keep)
