"""Winograd F(4x4, 3x3)'s transforms a row of tiles at a time (compiled; see
:mod:`cnnumpy.functional.fast.compiled`, whose switch they follow).

The kernels of :mod:`cnnumpy.functional.fast.compiled_winograd43` go tile by tile, each step a
loop over the channels: the input transform copies a tile's 36 pixels into an array of its
own, applies ``B^T`` twelve times and copies 36 values out, 84 short loops a tile. These do
the same sums in the same order (the results are the same bits) with most loops running over
a whole tile row:

* :func:`input_rows`: a tile row's six input rows copied once (the padding left as zeros),
  ``B^T`` along each tile's columns, then along the rows for the whole tile row, written
  straight into ``V``;
* :func:`output_rows`: ``A^T`` along the columns for the whole tile row, read straight from
  ``M``, then along each tile's rows, then the bias and the ReLU as four output rows are
  written whole;
* :func:`output_adjoint_rows`: four rows of ``dY`` copied once, ``A`` along each tile's
  rows, then along the columns for the whole tile row, into ``dM``;
* :func:`input_gradient_rows`: ``B`` along the columns for the whole tile row, read from
  ``dV``, then along each tile's rows, added into a ring of eight input rows that go to the
  input gradient whole once no later tile reaches them (each pixel gets its tiles in the
  same order).

The compiler vectorizes a loop over the channels only in some forms; these are the ones
measured fast. The caller's transformed arrays are read and written through six flat views
(through one view with six offsets, or a two-dimensional one, the loops stayed scalar); the
kernel's own arrays are indexed by fixed positions (a tile's six columns of a row as
``group[s, 0..3], group[s + 1, 0..1]``: computed from a variable step, 1.8x slower). The
views and the row copy are written out in each kernel: a compiled helper returning the six
views made every kernel 15-40 % slower (16 to 64 channels), one for the row copy 1-8 %.

Measured (2-core AMD EPYC, AVX-512, one thread, float32, ns a tile, the chunks the
convolution makes; tile by tile against a row at a time): input transform 32x32x16 337 / 160,
16x16x32 420 / 317, 8x8x64 543 / 538; output transform 132 / 91, 264 / 180, 357 / 324;
adjoint 208 / 111, 368 / 200, 371 / 328; input gradient 334 / 203, 408 / 358, 535 / 665 (so
from :data:`GRADIENT_BELOW` channels on it stays tile by tile). ResNet-20, paired steps:
inference at batch 256 1.16x, training 1.10x at batch 32 and 1.14x at 128.

Must equal, bit for bit: the tile-by-tile kernels of
:mod:`cnnumpy.functional.fast.compiled_winograd43`. Checked by
``tests/functional/fast/test_winograd43.py`` (``test_rows_kernel_equals_the_tiles_kernel``,
``test_row_kernels_equal_the_tile_kernels``).
"""

from __future__ import annotations

import numpy as np

from cnnumpy.functional.fast.compiled import jit as _jit
from cnnumpy.functional.fast.compiled_winograd43_points import _a, _at, _b, _bt

MIN_TILES = 2
"""Tiles a row from which the kernels of
:mod:`cnnumpy.functional.fast.compiled_winograd43` hand over to these (tiles 4 pixels
apart)."""

GRADIENT_BELOW = 32
"""Channels below which the input gradient runs :func:`input_gradient_rows`."""


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
    x_rows = x.reshape(n, h, w * c)
    v_flat, plane = v.ravel(), v.shape[1] * c  # value q's plane at q * plane
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
            first = (i * ht + t) * wt * c
            for q in range(6):  # then B^T along the rows, the whole tile row, into V
                v0, v1 = v_flat[q * plane + first:], v_flat[(q + 6) * plane + first:]
                v2, v3 = v_flat[(q + 12) * plane + first:], v_flat[(q + 18) * plane + first:]
                v4, v5 = v_flat[(q + 24) * plane + first:], v_flat[(q + 30) * plane + first:]
                for j in range(wt * c):
                    v0[j], v1[j], v2[j], v3[j], v4[j], v5[j] = _bt(
                        z_rows[0, q, j], z_rows[1, q, j], z_rows[2, q, j], z_rows[3, q, j],
                        z_rows[4, q, j], z_rows[5, q, j], two, four, five)


@_jit
def output_rows(m, y, bias, relu, two, four, eight):  # pragma: no cover (compiled)
    """``A^T M A`` of every tile into ``y`` (cropped where the output size is not a multiple
    of 4), plus ``bias``, then ``max(., 0)`` if ``relu``: ``A^T`` along each tile row's
    columns read straight from ``M`` (long loops), along its rows tile by tile, then the
    four output rows written whole.

    Shape:
        m: (36, N * Ht * Wt, F), C-contiguous; y: (N, Ho, Wo, F), C-contiguous; bias: (F,).
    """
    n, ho, wo, f = y.shape
    ht, wt = (ho + 3) // 4, (wo + 3) // 4
    wtf = wt * f
    p = np.empty((4, 6, wtf), dtype=y.dtype)  # A^T M: (row, column, tile and filter)
    p_flat = p.ravel()
    out = np.empty((4, wt * 4 * f), dtype=y.dtype)  # the tile row's four output rows
    out_flat = out.ravel()
    m_flat, plane = m.ravel(), m.shape[1] * f
    y_rows = y.reshape(n, ho, wo * f)
    row_bias = np.empty(wo * f, dtype=y.dtype)  # the bias of every value of an output row
    for j in range(wo):
        for k in range(f):
            row_bias[j * f + k] = bias[k]
    for i in range(n):
        for t in range(ht):
            first = (i * ht + t) * wtf
            for b in range(6):  # A^T along each column's six rows, the whole tile row
                m0, m1 = m_flat[b * plane + first:], m_flat[(b + 6) * plane + first:]
                m2, m3 = m_flat[(b + 12) * plane + first:], m_flat[(b + 18) * plane + first:]
                m4, m5 = m_flat[(b + 24) * plane + first:], m_flat[(b + 30) * plane + first:]
                for j in range(wtf):
                    p[0, b, j], p[1, b, j], p[2, b, j], p[3, b, j] = _at(
                        m0[j], m1[j], m2[j], m3[j], m4[j], m5[j], two, four, eight)
            for a in range(4):  # then along each row's six columns, tile by tile
                for s in range(wt):
                    ps = p_flat[a * 6 * wtf + s * f:]  # column b at b Wt F
                    os = out_flat[(a * wt + s) * 4 * f:]
                    for k in range(f):
                        os[k], os[f + k], os[2 * f + k], os[3 * f + k] = _at(
                            ps[k], ps[wtf + k], ps[2 * wtf + k], ps[3 * wtf + k],
                            ps[4 * wtf + k], ps[5 * wtf + k], two, four, eight)
            for a in range(min(4, ho - 4 * t)):  # plus the bias, the ReLU, into y
                dst = y_rows[i, 4 * t + a]
                if relu:
                    for j in range(wo * f):
                        value = out[a, j] + row_bias[j]
                        dst[j] = value if value > 0 else (value if value != value else 0)
                else:
                    for j in range(wo * f):
                        dst[j] = out[a, j] + row_bias[j]


@_jit
def output_adjoint_rows(dy, dm, two, four, eight):  # pragma: no cover (compiled)
    """``A dY A^T`` of every tile (zeros past the output's edges) into ``dm``: each tile row's
    four rows of ``dy`` copied whole, ``A`` along each row's four columns tile by tile, then
    along the columns' four rows for the whole tile row, written straight into ``dm``.

    Shape:
        dy: (N, Ho, Wo, F), C-contiguous; dm: (36, N * Ht * Wt, F), C-contiguous.
    """
    n, ho, wo, f = dy.shape
    ht, wt = (ho + 3) // 4, (wo + 3) // 4
    wtf = wt * f
    rows = np.zeros((4, 4 * wtf), dtype=dy.dtype)  # four rows of dy, zeros past its edges
    rows_flat = rows.ravel()
    p = np.empty((4, 6, wt, f), dtype=dy.dtype)  # dY A^T: (row, column, tile, filter)
    p_rows = p.reshape(4, 6, wtf)
    dy_rows = dy.reshape(n, ho, wo * f)
    dm_flat, plane = dm.ravel(), dm.shape[1] * f
    for i in range(n):
        for t in range(ht):
            for a in range(4):
                if 4 * t + a < ho:
                    dst, src = rows[a], dy_rows[i, 4 * t + a]
                    for j in range(wo * f):
                        dst[j] = src[j]
                else:
                    for j in range(4 * wtf):
                        rows[a, j] = 0
            for a in range(4):  # A along each row's four columns, tile by tile
                for s in range(wt):
                    d = rows_flat[(a * wt + s) * 4 * f:]
                    for k in range(f):
                        p[a, 0, s, k], p[a, 1, s, k], p[a, 2, s, k], p[a, 3, s, k], \
                            p[a, 4, s, k], p[a, 5, s, k] = _a(
                                d[k], d[f + k], d[2 * f + k], d[3 * f + k], two, four, eight)
            first = (i * ht + t) * wtf
            for b in range(6):  # then along each column's four rows, the whole tile row
                o0, o1 = dm_flat[b * plane + first:], dm_flat[(b + 6) * plane + first:]
                o2, o3 = dm_flat[(b + 12) * plane + first:], dm_flat[(b + 18) * plane + first:]
                o4, o5 = dm_flat[(b + 24) * plane + first:], dm_flat[(b + 30) * plane + first:]
                for j in range(wtf):
                    o0[j], o1[j], o2[j], o3[j], o4[j], o5[j] = _a(
                        p_rows[0, b, j], p_rows[1, b, j], p_rows[2, b, j], p_rows[3, b, j],
                        two, four, eight)


@_jit
def input_gradient_rows(dv, top, left, ht, wt, dx, two, four, five):  # pragma: no cover
    """``B dV B^T`` of every tile (4 pixels apart) added up where the tile came from, into
    ``dx`` (written whole), the padding (``top`` rows and ``left`` columns before ``dx``'s
    first pixel) cropped.

    ``B`` along each tile row's columns reads ``dV`` in place (long loops), along its rows
    tile by tile; a tile's six columns of gradient are added into six rows of a ring of eight
    of the kernel's own. The first four are then complete (the next tile row starts four rows
    down) and go to ``dx`` whole, their places zeroed for the rows eight further down. Every
    pixel gets its tiles' values in the tile-by-tile kernel's order: the same bits.

    Shape:
        dv: (36, N * Ht * Wt, C), C-contiguous; dx: (N, H, W, C), C-contiguous.
    """
    n, h, w, c = dx.shape
    wtc, span = wt * c, (4 * wt + 2) * c  # a tile row's values of one plane; its columns
    ring = np.zeros((8, span), dtype=dx.dtype)  # input rows' gradients, row R at R % 8
    y = np.empty((6, 6, wtc), dtype=dx.dtype)  # B along the columns: (row, column, tile)
    y_flat = y.ravel()
    dd = np.empty(6 * c, dtype=dx.dtype)  # one row of a tile's gradient, its six columns
    dv_flat, plane = dv.ravel(), dv.shape[1] * c
    dx_rows = dx.reshape(n, h, w * c)
    width = min(w, 4 * wt + 2 - left)  # dx's columns the tiles reach
    for i in range(n):
        for t in range(ht + 1):
            if t < ht:
                first = (i * ht + t) * wtc
                for q in range(6):  # B along each column's six rows, the whole tile row
                    e0, e1 = dv_flat[q * plane + first:], dv_flat[(q + 6) * plane + first:]
                    e2, e3 = dv_flat[(q + 12) * plane + first:], dv_flat[(q + 18) * plane + first:]
                    e4, e5 = dv_flat[(q + 24) * plane + first:], dv_flat[(q + 30) * plane + first:]
                    for j in range(wtc):
                        y[0, q, j], y[1, q, j], y[2, q, j], y[3, q, j], y[4, q, j], \
                            y[5, q, j] = _b(e0[j], e1[j], e2[j], e3[j], e4[j], e5[j],
                                            two, four, five)
                for a in range(6):  # then along each row's six columns, tile by tile
                    row = ring[(4 * t + a) % 8]
                    for s in range(wt):
                        ys = y_flat[a * 6 * wtc + s * c:]  # column q at q Wt C
                        for k in range(c):
                            dd[k], dd[c + k], dd[2 * c + k], dd[3 * c + k], dd[4 * c + k], \
                                dd[5 * c + k] = _b(ys[k], ys[wtc + k], ys[2 * wtc + k],
                                                   ys[3 * wtc + k], ys[4 * wtc + k],
                                                   ys[5 * wtc + k], two, four, five)
                        dst = row[4 * s * c:]
                        for j in range(6 * c):
                            dst[j] += dd[j]
            for a in range(4 if t < ht else 2):  # complete rows into dx, the padding cropped
                row = ring[(4 * t + a) % 8]
                r = 4 * t + a - top
                if 0 <= r < h:
                    dst, src = dx_rows[i, r], row[left * c:]
                    for j in range(width * c):
                        dst[j] = src[j]
                    for j in range(width * c, w * c):
                        dst[j] = 0
                for j in range(span):
                    row[j] = 0
        for r in range(max(0, 4 * ht + 2 - top), h):  # rows no tile reached
            for j in range(w * c):
                dx_rows[i, r, j] = 0
