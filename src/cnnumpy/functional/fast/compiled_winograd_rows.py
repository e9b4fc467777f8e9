"""Winograd F(2x2, 3x3)'s input transform a row of tiles at a time (compiled; see
:mod:`cnnumpy.functional.fast.compiled`, whose switch it follows), as
:mod:`cnnumpy.functional.fast.compiled_winograd43_rows` does for F(4x4, 3x3).

A tile row's four input rows are copied once (the padding left as zeros: no padded copy of
the chunk); ``B^T`` along each tile's four columns reads them at fixed places (a tile's
columns as ``group[s, 0..1], group[s + 1, 0..1]``), and ``B^T`` along the rows runs over the
whole tile row, written straight into ``V`` through four flat views (loops that write the
caller's array through one view at several offsets were not vectorized). The same
differences in the same order as the tile-by-tile kernel of
:mod:`cnnumpy.functional.fast.compiled_winograd`: the same bits.

Measured (2-core AMD EPYC, AVX-512, one thread, float32, ns a tile, tile by tile against a row
at a time): 32x32x32 186 / 117, 16x16x64 283 / 211, 28x28x8 75 / 33, 12x12x16 141 / 69.

Must equal, bit for bit: :func:`cnnumpy.functional.fast.compiled_winograd.winograd3_input`'s
tile-by-tile kernel. Checked by ``tests/functional/fast/test_compiled.py``
(``test_3x3_input_transform_equals_numpy_to_the_bit``, both kernels against NumPy).
"""

from __future__ import annotations

import numpy as np

from cnnumpy.functional.fast.compiled import jit as _jit


@_jit
def input_rows(x, top, left, ht, wt, v):  # pragma: no cover (compiled)
    """``B^T d B`` of every 4x4 tile (2 pixels apart) of ``x``, its first pixel at row
    ``top`` and column ``left`` of the padded grid (zeros outside: no padded copy), into
    ``v``.

    Shape:
        x: (N, H, W, C), C-contiguous; v: (16, N * Ht * Wt, C), C-contiguous.
    """
    n, h, w, c = x.shape
    groups = wt + 1  # the tile row's 2 Wt + 2 columns in pairs
    rows = np.zeros((4, groups * 2 * c), dtype=x.dtype)  # four input rows, zeros outside x
    grouped = rows.reshape(4, groups, 2, c)
    z = np.empty((4, 4, wt, c), dtype=x.dtype)  # B^T along the columns: (row, value, tile)
    z_rows = z.reshape(4, 4, wt * c)
    v_flat, plane = v.ravel(), v.shape[1] * c
    x_rows = x.reshape(n, h, w * c)
    width = min(w, groups * 2 - left)  # x's columns in a row of the padded grid
    for i in range(n):
        for t in range(ht):
            for a in range(4):
                r = 2 * t + a - top
                if 0 <= r < h:
                    dst, src = rows[a, left * c:], x_rows[i, r]
                    for j in range(width * c):
                        dst[j] = src[j]
                else:
                    for j in range(groups * 2 * c):
                        rows[a, j] = 0
            for a in range(4):  # each row's tiles: B^T along their four columns
                for s in range(wt):
                    for k in range(c):
                        x0, x1 = grouped[a, s, 0, k], grouped[a, s, 1, k]
                        x2, x3 = grouped[a, s + 1, 0, k], grouped[a, s + 1, 1, k]
                        z[a, 0, s, k] = x0 - x2
                        z[a, 1, s, k] = x1 + x2
                        z[a, 2, s, k] = x2 - x1
                        z[a, 3, s, k] = x1 - x3
            first = (i * ht + t) * wt * c
            for b in range(4):  # then along the rows, the whole tile row, into V
                v0, v1 = v_flat[b * plane + first:], v_flat[(b + 4) * plane + first:]
                v2, v3 = v_flat[(b + 8) * plane + first:], v_flat[(b + 12) * plane + first:]
                for j in range(wt * c):
                    r0, r1 = z_rows[0, b, j], z_rows[1, b, j]
                    r2, r3 = z_rows[2, b, j], z_rows[3, b, j]
                    v0[j] = r0 - r2
                    v1[j] = r1 + r2
                    v2[j] = r2 - r1
                    v3[j] = r1 - r3
