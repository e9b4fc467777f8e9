"""Compiled transforms of Winograd F(4x4, 3x3) for a plain convolution (see
:mod:`cnnumpy.functional.fast.compiled`, whose switch they follow). Each kernel makes one
pass over a chunk, tile by tile, with the channels innermost (one vector of them at a time):

* :func:`input_tiles`: ``B^T d B`` of every 6x6 input tile (stride 4) of a padded chunk, or
  of an unpadded one whose padding it reads as zeros;
* :func:`output_tiles`: ``A^T M A`` of every tile written straight into the chunk's NHWC
  output, cropped where the output size is not a multiple of 4 (a bias and a ReLU applied
  on the way);
* :func:`output_tiles_adjoint`: ``A dY A^T`` of every tile, read straight from the output
  gradient (zeros past the edges);
* :func:`input_gradient`: ``B dV B^T`` of every tile added back where the tile came from
  (neighbouring tiles overlap by two rows or columns), the padding cropped.

From :data:`~cnnumpy.functional.fast.compiled_winograd43_rows.MIN_TILES` tiles a row (and,
for the input gradient, below
:data:`~cnnumpy.functional.fast.compiled_winograd43_rows.GRADIENT_BELOW` channels), each of
these hands its tiles 4 pixels apart over to its counterpart in
:mod:`cnnumpy.functional.fast.compiled_winograd43_rows`, which makes the same sums a tile row
at a time (the same bits, 1.1-2.1x faster).

F(2x2, 5x5) has the same input transform (the same six points) with tiles two pixels apart:
:mod:`cnnumpy.functional.fast.compiled_winograd`'s ``winograd5_*`` call the first and the last
of these with ``step=2``.

Each tile's values are copied between the caller's arrays and small arrays of the kernel's own
before and after the arithmetic: loops that read one caller's array and write another's were
compiled to scalar code (the compiler cannot rule out that the arrays overlap), and made the
input transform 2x slower than these (F(2x2, 5x5)'s 1.4-1.7x, 8 to 64 channels).

The coefficients (2, 4, 5, 8) come in as arguments of the arrays' dtype, so that float32
stays float32. Must equal: the NumPy transforms of :mod:`cnnumpy.functional.fast.winograd43`
(and, with ``step=2``, of :mod:`cnnumpy.functional.fast.winograd5`). Checked by
``tests/functional/fast/test_winograd43.py`` (``test_compiled_equals_numpy``) and
``tests/functional/fast/test_compiled.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled_winograd43_rows
from cnnumpy.functional.fast.compiled import jit as _jit
from cnnumpy.functional.fast.compiled_winograd43_points import _a, _at, _b, _bt

COPY_BELOW = 32
"""The input gradient copies each tile's transformed values into the kernel's own array first
below this many channels (28x28x16 at batch 128, one thread: 1.70 against 2.64 ms), and reads
them in place from it on (5 images of 28x28x64: 0.58 against 0.75 ms)."""


@_jit
def _input_tiles(x, top, left, ht, wt, step, v, two, four,
                 five):  # pragma: no cover (compiled)
    n, h, w, c = x.shape
    d = np.empty((6, c), dtype=x.dtype)  # one input row of the tile
    z = np.empty((6, 6, c), dtype=x.dtype)
    o = np.empty((36, c), dtype=x.dtype)
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                for a in range(6):  # each input row's columns (zeros outside ``x``)
                    r = step * t + a - top
                    for b in range(6):
                        col = step * s + b - left
                        if 0 <= r < h and 0 <= col < w:
                            for k in range(c):
                                d[b, k] = x[i, r, col, k]
                        else:
                            for k in range(c):
                                d[b, k] = 0
                    for k in range(c):
                        z[a, 0, k], z[a, 1, k], z[a, 2, k], z[a, 3, k], z[a, 4, k], z[a, 5, k] = \
                            _bt(d[0, k], d[1, k], d[2, k], d[3, k], d[4, k], d[5, k],
                                two, four, five)
                for q in range(6):  # then each column's rows
                    for k in range(c):
                        o[q, k], o[6 + q, k], o[12 + q, k], o[18 + q, k], o[24 + q, k], \
                            o[30 + q, k] = _bt(z[0, q, k], z[1, q, k], z[2, q, k], z[3, q, k],
                                               z[4, q, k], z[5, q, k], two, four, five)
                for q in range(36):
                    for k in range(c):
                        v[q, tile, k] = o[q, k]


@_jit
def _output_tiles(m, y, bias, relu, two, four, eight):  # pragma: no cover (compiled)
    n, ho, wo, f = y.shape
    ht, wt = (ho + 3) // 4, (wo + 3) // 4
    e = np.empty((36, f), dtype=y.dtype)  # the tile's transformed values
    p = np.empty((4, 6, f), dtype=y.dtype)
    q = np.empty((4, 4, f), dtype=y.dtype)
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                for b in range(36):
                    for k in range(f):
                        e[b, k] = m[b, tile, k]
                for b in range(6):  # A^T M: each column's four rows
                    for k in range(f):
                        p[0, b, k], p[1, b, k], p[2, b, k], p[3, b, k] = _at(
                            e[b, k], e[6 + b, k], e[12 + b, k], e[18 + b, k], e[24 + b, k],
                            e[30 + b, k], two, four, eight)
                for a in range(4):  # (A^T M) A: each row's four columns
                    for k in range(f):
                        q[a, 0, k], q[a, 1, k], q[a, 2, k], q[a, 3, k] = _at(
                            p[a, 0, k], p[a, 1, k], p[a, 2, k], p[a, 3, k], p[a, 4, k],
                            p[a, 5, k], two, four, eight)
                for a in range(min(4, ho - 4 * t)):
                    for b in range(min(4, wo - 4 * s)):
                        if relu:
                            for k in range(f):
                                v = q[a, b, k] + bias[k]
                                y[i, 4 * t + a, 4 * s + b, k] = v if v > 0 else (
                                    v if v != v else 0)  # np.maximum keeps NaN
                        else:
                            for k in range(f):
                                y[i, 4 * t + a, 4 * s + b, k] = q[a, b, k] + bias[k]


@_jit
def _output_tiles_adjoint(dy, dm, two, four, eight):  # pragma: no cover (compiled)
    n, ho, wo, f = dy.shape
    ht, wt = (ho + 3) // 4, (wo + 3) // 4
    d = np.zeros((4, 4, f), dtype=dy.dtype)  # the tile's outputs, zeros past the edges
    p = np.empty((4, 6, f), dtype=dy.dtype)  # dY A^T: each output row's six columns
    o = np.empty((36, f), dtype=dy.dtype)
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                rows, cols = min(4, ho - 4 * t), min(4, wo - 4 * s)
                if rows < 4 or cols < 4:
                    d[...] = 0
                for a in range(rows):
                    for b in range(cols):
                        for k in range(f):
                            d[a, b, k] = dy[i, 4 * t + a, 4 * s + b, k]
                for a in range(4):
                    for k in range(f):
                        p[a, 0, k], p[a, 1, k], p[a, 2, k], p[a, 3, k], p[a, 4, k], p[a, 5, k] = \
                            _a(d[a, 0, k], d[a, 1, k], d[a, 2, k], d[a, 3, k], two, four, eight)
                for b in range(6):  # A (dY A^T): each column's six rows
                    for k in range(f):
                        o[b, k], o[6 + b, k], o[12 + b, k], o[18 + b, k], o[24 + b, k], \
                            o[30 + b, k] = _a(p[0, b, k], p[1, b, k], p[2, b, k], p[3, b, k],
                                              two, four, eight)
                for b in range(36):
                    for k in range(f):
                        dm[b, tile, k] = o[b, k]


@_jit
def _input_gradient(dv, top, left, ht, wt, step, dx, two, four, five):  # pragma: no cover
    n, h, w, c = dx.shape
    e = np.empty((36, c), dtype=dx.dtype)  # the tile's transformed gradient
    y = np.empty((6, 6, c), dtype=dx.dtype)
    dd = np.empty((6, c), dtype=dx.dtype)
    dx[...] = 0
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                if c < COPY_BELOW:  # copied first: see the module's docstring
                    for q in range(36):
                        for k in range(c):
                            e[q, k] = dv[q, tile, k]
                    for q in range(6):  # B dV: each column's rows
                        for k in range(c):
                            y[0, q, k], y[1, q, k], y[2, q, k], y[3, q, k], y[4, q, k], \
                                y[5, q, k] = _b(e[q, k], e[6 + q, k], e[12 + q, k],
                                                e[18 + q, k], e[24 + q, k], e[30 + q, k],
                                                two, four, five)
                else:
                    for q in range(6):
                        for k in range(c):
                            y[0, q, k], y[1, q, k], y[2, q, k], y[3, q, k], y[4, q, k], \
                                y[5, q, k] = _b(dv[q, tile, k], dv[6 + q, tile, k],
                                                dv[12 + q, tile, k], dv[18 + q, tile, k],
                                                dv[24 + q, tile, k], dv[30 + q, tile, k],
                                                two, four, five)
                for a in range(6):  # then each row's columns, added into dx
                    r = step * t + a - top
                    if r < 0 or r >= h:
                        continue
                    for k in range(c):
                        dd[0, k], dd[1, k], dd[2, k], dd[3, k], dd[4, k], dd[5, k] = _b(
                            y[a, 0, k], y[a, 1, k], y[a, 2, k], y[a, 3, k], y[a, 4, k],
                            y[a, 5, k], two, four, five)
                    for b in range(6):
                        col = step * s + b - left
                        if 0 <= col < w:
                            for k in range(c):
                                dx[i, r, col, k] += dd[b, k]


def _constants(dtype: Any) -> tuple[Any, Any, Any, Any]:
    """2, 4, 5 and 8 in ``dtype``."""
    kind = np.dtype(dtype).type
    return kind(2), kind(4), kind(5), kind(8)


def input_tiles(xpad: Any, tiles_hw: tuple[int, int], v: Any, step: int = 4,
                origin: tuple[int, int] = (0, 0)) -> None:
    """``B^T d B`` of every 6x6 input tile of a padded chunk, tiles ``step`` pixels apart (2:
    F(2x2, 5x5)'s), into ``v`` (C-contiguous, of ``xpad``'s dtype). With ``origin=(top,
    left)``, ``xpad`` is the unpadded chunk, its first pixel at row ``top`` and column
    ``left`` of the padded grid, and every pixel of the grid outside it is read as zero (no
    padded copy made). Tiles 4 pixels apart, at least
    :data:`~cnnumpy.functional.fast.compiled_winograd43_rows.MIN_TILES` a row: a tile row at a
    time (:mod:`cnnumpy.functional.fast.compiled_winograd43_rows`; the same bits).

    Shape:
        xpad: (N, Hp, Wp, C), Hp >= step Ht + 2, Wp >= step Wt + 2 (or less, from ``origin``);
        v: (36, N * Ht * Wt, C).
    """
    two, four, five, _ = _constants(xpad.dtype)
    xpad = np.ascontiguousarray(xpad)
    if (step == 4 and tiles_hw[1] >= compiled_winograd43_rows.MIN_TILES
            and v.flags.c_contiguous):  # a tile row at a time
        compiled_winograd43_rows.input_rows(xpad, origin[0], origin[1], tiles_hw[0],
                                            tiles_hw[1], v, two, four, five)
        return
    _input_tiles(xpad, origin[0], origin[1], tiles_hw[0], tiles_hw[1], step, v, two, four, five)


def _by_rows(width: int, out: Any) -> bool:
    """Whether the output transform (or its adjoint) of outputs ``width`` wide runs a tile
    row at a time (:mod:`cnnumpy.functional.fast.compiled_winograd43_rows`), writing ``out``
    through flat views (so only a C-contiguous one)."""
    return -(-width // 4) >= compiled_winograd43_rows.MIN_TILES and out.flags.c_contiguous


def output_tiles(m: Any, y: Any, bias: Any | None = None, relu: bool = False) -> None:
    """Write ``A^T M A`` of every tile into ``y``, tile ``(t, s)`` at rows ``4t .. 4t + 3``
    and columns ``4s .. 4s + 3`` (those inside ``y``), plus ``bias`` (if given), then
    ``max(., 0)`` (if ``relu``), in the same pass.

    Shape:
        m: (36, N * Ht * Wt, F), Ht = ceil(Ho / 4), Wt = ceil(Wo / 4); y: (N, Ho, Wo, F),
        C-contiguous; bias: (F,).
    """
    two, four, _, eight = _constants(y.dtype)
    bias = np.zeros(y.shape[-1], y.dtype) if bias is None else bias.astype(y.dtype, copy=False)
    m = np.ascontiguousarray(m)
    if _by_rows(y.shape[2], y):
        compiled_winograd43_rows.output_rows(m, y, bias, relu, two, four, eight)
        return
    _output_tiles(m, y, bias, relu, two, four, eight)


def output_tiles_adjoint(dy: Any, dm: Any) -> None:
    """Write into ``dm`` the gradient of :func:`output_tiles`'s ``m`` from that of its ``y``.

    Shape:
        dy: (N, Ho, Wo, F); dm: (36, N * Ht * Wt, F), C-contiguous.
    """
    two, four, _, eight = _constants(dy.dtype)
    dy = np.ascontiguousarray(dy)
    if _by_rows(dy.shape[2], dm):
        compiled_winograd43_rows.output_adjoint_rows(dy, dm, two, four, eight)
        return
    _output_tiles_adjoint(dy, dm, two, four, eight)


def input_gradient(dv: Any, pads: Any, tiles_hw: tuple[int, int], out: Any,
                   step: int = 4) -> None:
    """Write into ``out`` the gradient of the unpadded chunk from that of
    :func:`input_tiles`'s ``v`` (tiles ``step`` pixels apart).

    Shape:
        dv: (36, N * Ht * Wt, C); out: (N, H, W, C), C-contiguous.
    """
    two, four, five, _ = _constants(dv.dtype)
    (top, _), (left, _) = pads
    dv = np.ascontiguousarray(dv)
    if (step == 4 and tiles_hw[1] >= compiled_winograd43_rows.MIN_TILES
            and out.shape[3] < compiled_winograd43_rows.GRADIENT_BELOW
            and out.flags.c_contiguous):
        compiled_winograd43_rows.input_gradient_rows(dv, top, left, tiles_hw[0], tiles_hw[1],
                                                     out, two, four, five)
        return
    _input_gradient(dv, top, left, tiles_hw[0], tiles_hw[1], step, out, two, four, five)
