"""Winograd F(4x4, 3x3)'s input transform a row of tiles at a time (compiled; see
:mod:`cnnumpy.functional.fast.compiled`, whose switch it follows).

:func:`cnnumpy.functional.fast.compiled_winograd43.input_tiles` makes ``V = B^T d B`` tile by
tile: 36 copies of one pixel's channels into the kernel's own array, twelve passes of ``B^T``
and 36 copies out, each a loop over the channels, 84 short loops a tile. Here a tile row's six
input rows are copied once (six long copies, the padding left as zeros), ``B^T`` along the
columns runs tile by tile (six short loops a tile), and ``B^T`` along the rows and the copies
into ``V`` run over the whole tile row at once (long loops). The same sums in the same order:
the results are the same bits.

Measured (2-core AMD EPYC, AVX-512, one thread, float32, chunks as the convolution makes
them): 32x32x16 inputs 190 against 335 ns a tile, 16x16x32 340 against 460; ResNet-20's
inference at batch 256 1.145x, its training step 1.09x at batch 32 and 1.08x at 128. With
fewer than :data:`MIN_TILES` tiles a row (8x8x64: 2) the per-row work costs more than it
saves (690 against 620 ns), so those inputs keep the tile-by-tile kernel.

The column loop reads each tile's six columns at fixed places of the row seen as groups of
four columns (``group[s], group[s + 1]``): with the offsets computed from a variable step it
ran 1.8x slower (not vectorized). Must equal, bit for bit: the tile-by-tile kernel of
:mod:`cnnumpy.functional.fast.compiled_winograd43` (step 4). Checked by
``tests/functional/fast/test_winograd43.py`` (``test_rows_kernel_equals_the_tiles_kernel``).
"""

from __future__ import annotations

import numpy as np

from cnnumpy.functional.fast.compiled import jit as _jit
from cnnumpy.functional.fast.compiled_winograd43_points import _bt

MIN_TILES = 4
"""Tiles a row from which :func:`cnnumpy.functional.fast.compiled_winograd43.input_tiles`
runs this kernel (tiles 4 pixels apart)."""


@_jit
def input_rows(x, top, left, ht, wt, v, two, four, five):  # pragma: no cover (compiled)
    """``B^T d B`` of every 6x6 tile (4 pixels apart) of ``x``, its first pixel at row
    ``top`` and column ``left`` of the padded grid (zeros outside), into ``v``.

    Shape:
        x: (N, H, W, C), C-contiguous; v: (36, N * Ht * Wt, C), C-contiguous.
    """
    n, h, w, c = x.shape
    groups = wt + 1  # the tile row's columns in groups of four: 4 (Wt + 1) >= 4 Wt + 2
    rows = np.zeros((6, groups * 4 * c), dtype=x.dtype)  # six input rows, zeros outside x
    grouped = rows.reshape(6, groups, 4, c)
    z = np.empty((6, 6, wt, c), dtype=x.dtype)  # B^T along the columns: (row, value, tile)
    z_rows = z.reshape(6, 6, wt * c)
    o = np.empty((36, wt * c), dtype=x.dtype)  # the tile row's transformed values
    x_rows = x.reshape(n, h, w * c)
    v_flat = v.reshape(36, -1)
    width = min(w, groups * 4 - left)  # x's columns in a row of the padded grid
    for i in range(n):
        for t in range(ht):
            for a in range(6):
                r = 4 * t + a - top
                if 0 <= r < h:
                    dst, src = rows[a, left * c:], x_rows[i, r]
                    for j in range(width * c):
                        dst[j] = src[j]
                else:
                    for j in range(groups * 4 * c):
                        rows[a, j] = 0
            for a in range(6):  # each row's tiles: B^T along their six columns
                for s in range(wt):
                    for k in range(c):
                        z[a, 0, s, k], z[a, 1, s, k], z[a, 2, s, k], z[a, 3, s, k], \
                            z[a, 4, s, k], z[a, 5, s, k] = _bt(
                                grouped[a, s, 0, k], grouped[a, s, 1, k], grouped[a, s, 2, k],
                                grouped[a, s, 3, k], grouped[a, s + 1, 0, k],
                                grouped[a, s + 1, 1, k], two, four, five)
            for q in range(6):  # then B^T along the rows, the whole tile row in one loop
                for j in range(wt * c):
                    o[q, j], o[6 + q, j], o[12 + q, j], o[18 + q, j], o[24 + q, j], \
                        o[30 + q, j] = _bt(z_rows[0, q, j], z_rows[1, q, j], z_rows[2, q, j],
                                           z_rows[3, q, j], z_rows[4, q, j], z_rows[5, q, j],
                                           two, four, five)
            first = (i * ht + t) * wt * c
            for q in range(36):
                dst = v_flat[q, first:]
                for j in range(wt * c):
                    dst[j] = o[q, j]
