"""Winograd's F(4x4, 3x3): a 3x3 stride-1 convolution in 4x fewer multiplications, as pure
functions (NHWC), for :mod:`cnnumpy.functional.fast.winograd_conv`.

As F(2x2, 3x3) (:mod:`cnnumpy.functional.fast.winograd`, whose docstring explains the
scheme), with 4x4 output tiles, each from the 6x6 input tile around it (neighbouring tiles
overlap by two rows or columns):

    U = G g G^T (6x6 per channel pair)    V = B^T d B (6x6 per tile and channel)
    M = U * V summed over input channels  y = A^T M A (the 4x4 output tile)

A tile is 36 transformed values for 16 outputs, against 16 for 4 in F(2x2, 3x3): 2.25
values an output instead of 4, which makes the transformed arrays, their passes and the
products 44 % smaller. The matrices are the Toom-Cook ones on the points 0, 1, -1, 2, -2 and
infinity (Lavin and Gray, 2016); their entries up to 8 (and 1/24 in ``G``) cost float32 a
little accuracy: results differ from the direct convolution by about 1e-6 of the output's
scale, against a few units in the last place for F(2x2, 3x3).

Arrays in the transformed domain are ``(36, T, ...)``: index ``6 * a + b`` for the tile's
row ``a`` and column ``b``, tiles ``(N, Ht, Wt)`` row-major. Each function here is the NumPy
reference (einsums over gathered tiles, and 36 strided slab adds for the input gradient);
where Numba is installed the compiled passes of
:mod:`cnnumpy.functional.fast.compiled_winograd43` run instead.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` and ``conv2d_backward`` (3x3,
stride 1) within float rounding; the compiled passes these. Checked by
``tests/functional/fast/test_winograd43.py``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled, compiled_winograd, compiled_winograd43
from cnnumpy.functional.im2col import Pads

TILE = 4
"""Outputs per tile along each axis."""

VALUES = 36
"""Transformed-domain values per tile."""

B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


@functools.cache
def _matrices(dtype: str) -> tuple[Any, Any, Any]:
    """``B^T``, ``G`` and ``A^T`` in ``dtype``."""
    bt, g, at = (xp.asarray(np.array(m, dtype=np.float64), dtype=dtype) for m in (B_T, G, A_T))
    return bt, g, at


@functools.lru_cache(maxsize=16)
def _kron(data: bytes, shape: tuple[int, int], dtype: str) -> Any:
    """``m ⊗ m`` (the Kronecker product) of the matrix ``m`` given by its bytes, shape and
    dtype."""
    m = np.frombuffer(data, dtype=dtype).reshape(shape)
    return xp.asarray(np.kron(m, m))


def sandwich(m: Any, a: Any) -> Any:
    """``m a m^T`` over the first two axes of ``a``, as one matrix product: ``m ⊗ m`` times
    ``a`` with its first two axes flattened. ``einsum`` of the three planned its path on every
    call (0.27 ms each, 13 ms of a ResNet-20 training step at batch 32); two ``tensordot``
    products took 20-35 us for 16 and 32 channels, this one 3-11 us (both about 80 us for 64).
    Where the compiled kernels apply (``m`` of 3 or 6 columns), they run instead.

    Shape:
        m: (P, Q); a: (Q, Q, ...) -> (P, P, ...).
    """
    p, q = m.shape
    if q in (3, 6) and compiled.usable(m, a) and m.dtype == a.dtype:
        return compiled_winograd.sandwich(m, a)  # 2-3x faster: sums in one pass per row
    product = _kron(np.asarray(m).tobytes(), (p, q), m.dtype.str) @ a.reshape(q * q, -1)
    return product.reshape(p, p, *a.shape[2:])


def kernel_transform(kernel: Any) -> Any:
    """``G g G^T`` for every channel pair.

    Shape:
        kernel: (3, 3, C, F) -> (36, C, F).
    """
    g = _matrices(kernel.dtype.name)[1]
    return sandwich(g, kernel).reshape(VALUES, *kernel.shape[2:])


def kernel_transform_adjoint(du: Any) -> Any:
    """``G^T dU G``: the kernel gradient from its transformed-domain gradient.

    Shape:
        du: (36, C, F) -> (3, 3, C, F).
    """
    g = _matrices(du.dtype.name)[1]
    return sandwich(g.T, du.reshape(6, 6, *du.shape[1:]))


def input_tiles(xpad: Any, tiles_hw: tuple[int, int], out: Any) -> None:
    """``B^T d B`` of every 6x6 input tile (stride 4) of a padded chunk, into ``out``.

    Shape:
        xpad: (N, Hp, Wp, C), Hp >= 4 Ht + 2, Wp >= 4 Wt + 2; out: (36, N * Ht * Wt, C).
    """
    if compiled.usable(xpad, out) and out.flags.c_contiguous:
        compiled_winograd43.input_tiles(xpad, tiles_hw, out)
        return
    ht, wt = tiles_hw
    windows = xp.lib.stride_tricks.sliding_window_view(xpad, (6, 6), axis=(1, 2))
    tiles = windows[:, :4 * ht:4, :4 * wt:4]  # (N, Ht, Wt, C, 6, 6)
    bt = _matrices(xpad.dtype.name)[0]
    v = xp.einsum("ai,ntscij,bj->abntsc", bt, tiles, bt, optimize=True)
    out[...] = v.reshape(out.shape)


def output_tiles(m: Any, y: Any, bias: Any | None = None, relu: bool = False) -> None:
    """``A^T M A`` of every tile written into ``y``, tile ``(t, s)`` at rows ``4t .. 4t + 3``
    and columns ``4s .. 4s + 3`` (those inside ``y``); then ``y += bias`` (if given) and
    ``y = max(y, 0)`` (if ``relu``), in the same pass where compiled.

    Shape:
        m: (36, N * Ht * Wt, F), Ht = ceil(Ho / 4), Wt = ceil(Wo / 4); y: (N, Ho, Wo, F);
        bias: (F,).
    """
    if compiled.usable(m, y) and y.flags.c_contiguous:
        compiled_winograd43.output_tiles(m, y, bias, relu)
        return
    n, ho, wo, f = y.shape
    ht, wt = -(-ho // TILE), -(-wo // TILE)
    at = _matrices(m.dtype.name)[2]
    tiles = xp.einsum("ia,abntsf,jb->ntisjf", at, m.reshape(6, 6, n, ht, wt, f), at,
                      optimize=True)
    y[...] = tiles.reshape(n, TILE * ht, TILE * wt, f)[:, :ho, :wo]
    if bias is not None:
        y += bias
    if relu:
        xp.maximum(y, 0, out=y)


def output_tiles_adjoint(dy: Any, out: Any) -> None:
    """``A dY A^T`` of every tile (outputs past the edges taken as zero), into ``out``: the
    gradient of :func:`output_tiles`'s ``m``.

    Shape:
        dy: (N, Ho, Wo, F); out: (36, N * Ht * Wt, F).
    """
    if compiled.usable(dy, out) and out.flags.c_contiguous:
        compiled_winograd43.output_tiles_adjoint(dy, out)
        return
    n, ho, wo, f = dy.shape
    ht, wt = -(-ho // TILE), -(-wo // TILE)
    full = xp.zeros((n, TILE * ht, TILE * wt, f), dtype=dy.dtype)
    full[:, :ho, :wo] = dy
    at = _matrices(dy.dtype.name)[2]
    dm = xp.einsum("ia,ntisjf,jb->abntsf", at, full.reshape(n, ht, TILE, wt, TILE, f), at,
                   optimize=True)
    out[...] = dm.reshape(out.shape)


def input_gradient(dv: Any, pads: Pads, tiles_hw: tuple[int, int], out: Any) -> None:
    """``B dV B^T`` of every tile added back where the tile came from, the padding cropped,
    into ``out``: the gradient of the unpadded chunk from that of :func:`input_tiles`'s
    result.

    Shape:
        dv: (36, N * Ht * Wt, C); out: (N, H, W, C).
    """
    if compiled.usable(dv, out) and out.flags.c_contiguous:
        compiled_winograd43.input_gradient(dv, pads, tiles_hw, out)
        return
    (top, bottom), (left, right) = pads
    n, h, w, c = out.shape
    ht, wt = tiles_hw
    bt = _matrices(dv.dtype.name)[0]
    dd = xp.einsum("ai,abntsc,bj->ijntsc", bt, dv.reshape(6, 6, n, ht, wt, c), bt,
                   optimize=True)
    dxpad = xp.zeros((n, max(h + top + bottom, TILE * ht + 2),
                      max(w + left + right, TILE * wt + 2), c), dtype=dv.dtype)
    for i in range(6):  # each of the tile's 36 places: one strided slab add
        for j in range(6):
            dxpad[:, i:i + TILE * ht:TILE, j:j + TILE * wt:TILE] += dd[i, j]
    out[...] = dxpad[:, top:top + h, left:left + w]
