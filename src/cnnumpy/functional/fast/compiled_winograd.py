"""Compiled Winograd transforms (see :mod:`cnnumpy.functional.fast.compiled`, whose switch they
follow): each is one loop nest over a chunk where the NumPy version makes several passes.

The 3x3 arithmetic is the NumPy version's in the same order, so its forward results are the
same to the bit; the input transform's adjoint adds the overlapping tiles in another order.

Winograd F(2x2, 3x3) (:mod:`cnnumpy.functional.fast.winograd` gives the layouts):

* :func:`winograd3_input`: ``B^T d B`` of every input tile of a padded chunk (a tile row at a
  time from :data:`ROWS_FROM` tiles a row: :mod:`cnnumpy.functional.fast.compiled_winograd_rows`);
* :func:`winograd3_input_adjoint`: ``B dV B^T`` added back into the unpadded input gradient;
* :func:`winograd3_output_pool`: ``A^T M A`` and the 2x2 max pooling of each tile's outputs;

and the same three for F(2x2, 5x5) (:mod:`cnnumpy.functional.fast.winograd5`): ``winograd5_*``.
For every tile size, :func:`sandwich`: ``m a m^T`` for ``m`` of 3 or 6 columns, the kernel
transform ``G g G^T`` and its adjoint ``G^T dU G`` (one vector of channel pairs at a time).

Tried and left to NumPy: the pooled gradient through ``A dY A^T`` (16 output planes written
per element ran 1.8x slower than NumPy's whole-plane passes).

Must equal: the NumPy transforms of :mod:`cnnumpy.functional.fast.winograd` and
:mod:`cnnumpy.functional.fast.winograd5`, and :func:`cnnumpy.functional.fast.winograd43.sandwich`'s
matrix product. Checked by ``tests/functional/fast/test_compiled.py``
(``test_3x3_input_transform_equals_numpy_to_the_bit``, ``test_input_gradient_matches_numpy``,
``test_output_pool_equals_numpy_with_ties_and_nans``) and
``tests/functional/fast/test_winograd43.py`` (``test_compiled_sandwich_equals_numpy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled_winograd43, compiled_winograd_rows
from cnnumpy.functional.fast.compiled import jit as _jit

ROWS_FROM = 2
"""Tiles a row from which :func:`winograd3_input` runs
:func:`cnnumpy.functional.fast.compiled_winograd_rows.input_rows`."""


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
    """:func:`cnnumpy.functional.fast.winograd.input_transform`.

    Shape:
        xpad: (N, Hp, Wp, C) -> (16, N * Ht * Wt, C).
    """
    v = np.empty((16, xpad.shape[0] * tiles_hw[0] * tiles_hw[1], xpad.shape[3]),
                 dtype=xpad.dtype)
    if tiles_hw[1] >= ROWS_FROM:  # a tile row at a time: the same bits, faster
        compiled_winograd_rows.input_rows(np.ascontiguousarray(xpad), 0, 0, *tiles_hw, v)
    else:
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
    result (:func:`cnnumpy.functional.fast.winograd.input_transform_adjoint`, cropped).

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
    :func:`cnnumpy.functional.fast.winograd.output_transform` (and ``first``, if given, the index
    of the first maximum), as :func:`cnnumpy.functional.pooling.max_of` of them.

    Shape:
        m: (16, T, F); out, first: (T, F), C-contiguous.
    """
    keep = first is not None
    _output_pool(m, out, first if keep else np.empty((1, 1), dtype=np.uint8), keep)


# F(2x2, 5x5) (:mod:`cnnumpy.functional.fast.winograd5`): its input transform is F(4x4, 3x3)'s
# (the same six points), with tiles two pixels apart instead of four.

def winograd5_input(xpad: Any, tiles_hw: tuple[int, int]) -> Any:
    """:func:`cnnumpy.functional.fast.winograd5.input_transform`.

    Shape:
        xpad: (N, Hp, Wp, C) -> (36, N * Ht * Wt, C).
    """
    v = np.empty((36, xpad.shape[0] * tiles_hw[0] * tiles_hw[1], xpad.shape[3]),
                 dtype=xpad.dtype)
    compiled_winograd43.input_tiles(xpad, tiles_hw, v, step=2)
    return v


def winograd5_input_adjoint(dv: Any, pads: Any, tiles_hw: tuple[int, int], out: Any) -> None:
    """Write into ``out`` the gradient of the unpadded chunk from that of
    :func:`winograd5_input`'s result
    (:func:`cnnumpy.functional.fast.winograd5.input_transform_adjoint`, cropped).

    Shape:
        dv: (36, N * Ht * Wt, C); out: (N, H, W, C), C-contiguous.
    """
    compiled_winograd43.input_gradient(dv, pads, tiles_hw, out, step=2)


@_jit
def _output_pool6(m, out, first, keep_first, two):  # pragma: no cover (compiled)
    t_count, f = out.shape
    p = np.empty((2, 6, f), dtype=out.dtype)
    for t in range(t_count):
        for b in range(6):  # A^T M: each column's two rows
            for k in range(f):
                m0, m1, m2 = m[b, t, k], m[6 + b, t, k], m[12 + b, t, k]
                m3, m4, m5 = m[18 + b, t, k], m[24 + b, t, k], m[30 + b, t, k]
                p[0, b, k] = m0 + m1 + m2 + m3 + m4
                p[1, b, k] = m1 - m2 + two * (m3 - m4) + m5
        for k in range(f):  # (A^T M) A, then the window's maximum as in _output_pool
            best, at = p[0, 0, k] + p[0, 1, k] + p[0, 2, k] + p[0, 3, k] + p[0, 4, k], 0
            for j in range(1, 4):
                row = j // 2
                if j % 2 == 0:
                    y = p[row, 0, k] + p[row, 1, k] + p[row, 2, k] + p[row, 3, k] + p[row, 4, k]
                else:
                    y = p[row, 1, k] - p[row, 2, k] + two * (p[row, 3, k] - p[row, 4, k]) \
                        + p[row, 5, k]
                at = j if y > best else at
                best = y if (y > best or y != y) else best
            out[t, k] = best
            if keep_first:
                first[t, k] = at


def winograd5_output_pool(m: Any, out: Any, first: Any | None) -> None:
    """:func:`cnnumpy.functional.fast.winograd5.output_pool`: ``A^T M A`` of every tile and the
    maximum of its four outputs into ``out`` (and the first one's index into ``first``).

    Shape:
        m: (36, T, F); out, first: (T, F), C-contiguous.
    """
    keep = first is not None
    _output_pool6(np.ascontiguousarray(m), out,
                  first if keep else np.empty((1, 1), dtype=np.uint8), keep,
                  m.dtype.type(2))  # in m's dtype: no promotion to float64


@_jit
def _sandwich3(m, a, out):  # pragma: no cover (compiled)
    """``out[r, s] = sum over i, j of m[r, i] m[s, j] a[i, j]``, ``m`` of 3 columns: rows of
    ``m a`` first, then of ``(m a) m^T``, each a sum of three rows written in one pass."""
    p, n = m.shape[0], a.shape[2]
    t = np.empty((p, 3, n), a.dtype)
    for r in range(p):
        c0, c1, c2 = m[r, 0], m[r, 1], m[r, 2]
        for j in range(3):
            for x in range(n):
                t[r, j, x] = c0 * a[0, j, x] + c1 * a[1, j, x] + c2 * a[2, j, x]
    for r in range(p):
        for s in range(p):
            c0, c1, c2 = m[s, 0], m[s, 1], m[s, 2]
            for x in range(n):
                out[r, s, x] = c0 * t[r, 0, x] + c1 * t[r, 1, x] + c2 * t[r, 2, x]


@_jit
def _sandwich6(m, a, out):  # pragma: no cover (compiled)
    """:func:`_sandwich3` for ``m`` of 6 columns."""
    p, n = m.shape[0], a.shape[2]
    t = np.empty((p, 6, n), a.dtype)
    for r in range(p):
        c0, c1, c2, c3, c4, c5 = m[r, 0], m[r, 1], m[r, 2], m[r, 3], m[r, 4], m[r, 5]
        for j in range(6):
            for x in range(n):
                t[r, j, x] = (c0 * a[0, j, x] + c1 * a[1, j, x] + c2 * a[2, j, x]
                              + c3 * a[3, j, x] + c4 * a[4, j, x] + c5 * a[5, j, x])
    for r in range(p):
        for s in range(p):
            c0, c1, c2, c3, c4, c5 = m[s, 0], m[s, 1], m[s, 2], m[s, 3], m[s, 4], m[s, 5]
            for x in range(n):
                out[r, s, x] = (c0 * t[r, 0, x] + c1 * t[r, 1, x] + c2 * t[r, 2, x]
                                + c3 * t[r, 3, x] + c4 * t[r, 4, x] + c5 * t[r, 5, x])


def sandwich(m: Any, a: Any) -> Any:
    """``m a m^T`` over the first two axes of ``a``, for ``m`` of 3 or 6 columns (of
    ``a``'s dtype). ResNet-20's kernel transform at 64 channels, one thread: 40 us against
    the Kronecker product's 80-110 us (7 us against 2.4 at 16 channels).

    Shape:
        m: (P, Q), Q 3 or 6; a: (Q, Q, ...) -> (P, P, ...).
    """
    p, q = m.shape
    out = np.empty((p, p, *a.shape[2:]), a.dtype)
    kernel = _sandwich3 if q == 3 else _sandwich6
    kernel(np.ascontiguousarray(m), np.ascontiguousarray(a).reshape(q, q, -1),
           out.reshape(p, p, -1))
    return out
