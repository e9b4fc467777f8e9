"""Compiled transforms of Winograd F(2x2, 3x3) for a plain convolution (no pooling after it;
see :mod:`cnnumpy.functional.fast.compiled`, whose switch they follow):

* :func:`input_tiles`: :func:`cnnumpy.functional.fast.compiled_winograd.winograd3_input`
  into a given array (a scratch array reused from chunk to chunk);
* :func:`output_tiles`: ``A^T M A`` of every tile written straight into the chunk's NHWC
  output, the last row or column of tiles cropped where the output size is odd;
* :func:`output_tiles_adjoint`: ``A dY A^T``, the transformed-domain gradient of every tile
  read straight from the output gradient (zeros past an odd edge).

The NumPy versions (:func:`cnnumpy.functional.fast.winograd.output_transform` and its
adjoint) give each tile's four outputs as four planes, which then take a strided copy into
every other row and column of the output; these make one pass instead.

Must equal: the NumPy transforms, with the tiles scattered to (or gathered from) their
places. Checked by ``tests/functional/fast/test_winograd_conv.py``
(``test_compiled_output_transforms_equal_numpy``; the input tiles through
``test_equals_im2col_forward_and_backward``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled_winograd
from cnnumpy.functional.fast.compiled import jit as _jit


def input_tiles(xpad: Any, tiles_hw: tuple[int, int], v: Any) -> None:
    """``B^T d B`` of every 4x4 input tile of a padded chunk into ``v`` (C-contiguous, of
    ``xpad``'s dtype), as :func:`cnnumpy.functional.fast.compiled_winograd.winograd3_input`.

    Shape:
        xpad: (N, Hp, Wp, C); v: (16, N * Ht * Wt, C).
    """
    compiled_winograd._input_tiles(np.ascontiguousarray(xpad), tiles_hw[0], tiles_hw[1], v)


@_jit
def _output_tiles(m, y):  # pragma: no cover (compiled)
    n, ho, wo, f = y.shape
    ht, wt = (ho + 1) // 2, (wo + 1) // 2
    p = np.empty((2, 4, f), dtype=y.dtype)
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                for b in range(4):  # A^T M: each column's two rows
                    for k in range(f):
                        m0, m1 = m[b, tile, k], m[4 + b, tile, k]
                        m2, m3 = m[8 + b, tile, k], m[12 + b, tile, k]
                        p[0, b, k] = m0 + m1 + m2
                        p[1, b, k] = m1 - m2 - m3
                for a in range(2):  # (A^T M) A: each row's two columns
                    r = 2 * t + a
                    if r >= ho:
                        continue
                    row = y[i, r]
                    for k in range(f):
                        row[2 * s, k] = p[a, 0, k] + p[a, 1, k] + p[a, 2, k]
                    if 2 * s + 1 < wo:
                        for k in range(f):
                            row[2 * s + 1, k] = p[a, 1, k] - p[a, 2, k] - p[a, 3, k]


def output_tiles(m: Any, y: Any) -> None:
    """Write ``A^T M A`` of every tile into ``y``, tile ``(t, s)`` at rows ``2t, 2t + 1`` and
    columns ``2s, 2s + 1`` (those inside ``y``).

    Shape:
        m: (16, N * Ht * Wt, F), Ht = ceil(Ho / 2), Wt = ceil(Wo / 2); y: (N, Ho, Wo, F),
        C-contiguous.
    """
    _output_tiles(np.ascontiguousarray(m), y)


@_jit
def _output_tiles_adjoint(dy, dm):  # pragma: no cover (compiled)
    n, ho, wo, f = dy.shape
    ht, wt = (ho + 1) // 2, (wo + 1) // 2
    d = np.zeros((2, 2, f), dtype=dy.dtype)  # the tile's outputs, zeros past odd edges
    p = np.empty((2, 4, f), dtype=dy.dtype)  # dY A^T: each output row's four columns
    for i in range(n):
        for t in range(ht):
            for s in range(wt):
                tile = (i * ht + t) * wt + s
                for a in range(2):
                    r = 2 * t + a
                    for b in range(2):
                        q = 2 * s + b
                        if r < ho and q < wo:
                            d[a, b] = dy[i, r, q]
                        else:
                            d[a, b] = 0
                for a in range(2):
                    for k in range(f):
                        g0, g1 = d[a, 0, k], d[a, 1, k]
                        p[a, 0, k] = g0
                        p[a, 1, k] = g0 + g1
                        p[a, 2, k] = g0 - g1
                        p[a, 3, k] = -g1
                for b in range(4):  # A (dY A^T): each column's four rows
                    for k in range(f):
                        dm[b, tile, k] = p[0, b, k]
                    for k in range(f):
                        dm[4 + b, tile, k] = p[0, b, k] + p[1, b, k]
                    for k in range(f):
                        dm[8 + b, tile, k] = p[0, b, k] - p[1, b, k]
                    for k in range(f):
                        dm[12 + b, tile, k] = -p[1, b, k]


def output_tiles_adjoint(dy: Any) -> Any:
    """The gradient of :func:`output_tiles`'s ``m`` from that of its ``y``: ``A dY A^T`` of
    every tile, outputs past an odd edge taken as zero.

    Shape:
        dy: (N, Ho, Wo, F) -> (16, N * Ht * Wt, F).
    """
    n, ho, wo, f = dy.shape
    dm = np.empty((16, n * ((ho + 1) // 2) * ((wo + 1) // 2), f), dtype=dy.dtype)
    _output_tiles_adjoint(np.ascontiguousarray(dy), dm)
    return dm
