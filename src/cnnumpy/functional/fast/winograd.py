"""Winograd's minimal filtering F(2x2, 3x3): a 3x3 stride-1 convolution in 2.25x fewer
multiplications, as pure functions (NHWC).

The output is cut into 2x2 tiles; each needs the 4x4 input tile around it. In the transformed
domain a tile's convolution is an elementwise product of 16 values per channel pair, so a
chunk of ``T`` tiles is 16 matrix products ``(T, C) @ (C, F)`` instead of one ``(4T, 9C) @
(9C, F)`` (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):

    U = G g G^T  (kernel, 4x4 per channel pair)   V = B^T d B  (input tile d, 4x4)
    M = U * V summed over input channels          y = A^T M A  (the 2x2 output tile)

The transforms only add and subtract (with halves in ``G``), so float32 results differ from
the direct convolution by a few units in the last place. Each transform here is a few
elementwise passes over whole slabs of a chunk; their adjoints give the gradients:
``dM = A dy A^T``, then ``dU = V^T dM`` (kernel, ``dg = G^T dU G``) and ``dV = dM U^T``
(input, ``dd = B dV B^T`` added back where each overlapping tile came from).

Arrays in the transformed domain are ``(16, T, ...)``: index ``4 * a + b`` for the tile's
row ``a`` and column ``b``, tiles ``(N, Ht, Wt)`` row-major. The output of
:func:`output_transform` is ``(4, T, F)``: index ``2 * i + j`` for output ``(2t + i, 2s +
j)`` of tile ``(t, s)``, the row-major order of a 2x2 pooling window's elements.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` (3x3, stride 1) within float
rounding. Checked by ``tests/functional/fast/test_winograd.py``
(``test_tiles_of_the_transforms_are_the_direct_convolution``,
``test_fused_path_matches_the_naive_convolution_then_the_naive_pool``).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled, compiled_winograd, winograd5
from cnnumpy.functional.im2col import Pads

ENABLED = True
"""Compute a 3x3 or 5x5 stride-1 convolution followed by 2x2 max pooling this way
(:mod:`cnnumpy.functional.fast.conv_pool`, where each 2x2 output tile is one pooling window);
False: always by im2col. Plain 3x3 convolutions use these transforms too, with compiled
output transforms that write each tile into place
(:mod:`cnnumpy.functional.fast.winograd_conv`, switch ``winograd_conv.ENABLED``)."""

MIN_CHANNELS = 16
"""Below this many input channels the transforms cost more than the products they save."""

VALUES = 16
"""Transformed-domain values per tile."""

def algorithm(kernel_shape: tuple[int, ...], strides: tuple[int, int],
              dilation: tuple[int, int]) -> ModuleType | None:
    """The module whose transforms compute an ungrouped convolution of this kernel (this
    one for 3x3, :mod:`cnnumpy.functional.fast.winograd5` for 5x5), or None: it takes stride 1,
    no dilation, at least :data:`MIN_CHANNELS` input channels (and :data:`ENABLED`)."""
    if not (ENABLED and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)
            and kernel_shape[2] >= MIN_CHANNELS):
        return None
    return _BY_SIZE.get((kernel_shape[0], kernel_shape[1]))


def image_bytes(values: int, tiles: int, channels: int, filters: int, itemsize: int) -> int:
    """Bytes of one image's transformed input and product (``values`` a tile each), by
    which the kernels size their chunks."""
    return values * tiles * (channels + filters) * itemsize


def _g_rows(g: Any, axis: int) -> Any:
    """``G`` applied along ``axis`` (length 3 -> 4) of ``g``, as whole-slab adds."""
    g0, g1, g2 = (xp.take(g, i, axis=axis) for i in range(3))
    half = g.dtype.type(0.5)
    outer = g0 + g2
    return xp.stack((g0, (outer + g1) * half, (outer - g1) * half, g2), axis=axis)


def _g_t_rows(d: Any, axis: int) -> Any:
    """``G^T`` applied along ``axis`` (length 4 -> 3) of ``d``: the adjoint of :func:`_g_rows`."""
    d0, d1, d2, d3 = (xp.take(d, i, axis=axis) for i in range(4))
    half = d.dtype.type(0.5)
    inner = (d1 + d2) * half
    return xp.stack((d0 + inner, (d1 - d2) * half, inner + d3), axis=axis)


def kernel_transform(kernel: Any) -> Any:
    """``G g G^T`` for every channel pair (whole (C, F) slabs at a time: one ``einsum`` of
    the three took 0.3 ms at 64 channels, ten times this).

    Shape:
        kernel: (3, 3, C, F) -> (16, C, F).
    """
    c, f = kernel.shape[2:]
    return _g_rows(_g_rows(kernel, 0), 1).reshape(16, c, f)


def kernel_transform_adjoint(du: Any) -> Any:
    """``G^T dU G``: the kernel gradient from its transformed-domain gradient.

    Shape:
        du: (16, C, F) -> (3, 3, C, F).
    """
    return _g_t_rows(_g_t_rows(du.reshape(4, 4, *du.shape[1:]), 0), 1)


def _rows(a: Any, k: int, tiles: int) -> Any:
    """Rows ``k, k + 2, ...`` of ``a`` (axis 2): element ``k`` of every tile's 4 rows."""
    return a[:, :, k:k + 2 * tiles:2]


def input_transform(xpad: Any, tiles_hw: tuple[int, int]) -> Any:
    """``B^T d B`` for every 4x4 input tile ``d`` (stride 2) of a padded chunk.

    Columns are transformed first, on the padded chunk split into its even and odd columns
    (contiguous copies, so that every later pass runs along whole rows), then rows.

    Shape:
        xpad: (N, Hp, Wp, C), Hp >= 2 Ht + 2, Wp >= 2 Wt + 2 -> (16, N * Ht * Wt, C).
    """
    if compiled.usable(xpad):
        return compiled_winograd.winograd3_input(xpad, tiles_hw)
    ht, wt = tiles_hw
    n, c = xpad.shape[0], xpad.shape[3]
    rows = xpad[:, :2 * ht + 2]
    even = xp.ascontiguousarray(rows[:, :, 0:2 * wt + 1:2])  # columns 0, 2, ..., 2 Wt
    odd = xp.ascontiguousarray(rows[:, :, 1:2 * wt + 2:2])  # columns 1, 3, ..., 2 Wt + 1
    c0, c1, c2, c3 = even[:, :, :wt], odd[:, :, :wt], even[:, :, 1:], odd[:, :, 1:]
    z = xp.empty((4, n, 2 * ht + 2, wt, c), dtype=xpad.dtype)  # columns transformed
    xp.subtract(c0, c2, out=z[0])
    xp.add(c1, c2, out=z[1])
    xp.subtract(c2, c1, out=z[2])
    xp.subtract(c1, c3, out=z[3])
    r0, r1, r2, r3 = (_rows(z, k, ht) for k in range(4))
    v = xp.empty((4, 4, n, ht, wt, c), dtype=xpad.dtype)
    xp.subtract(r0, r2, out=v[0])
    xp.add(r1, r2, out=v[1])
    xp.subtract(r2, r1, out=v[2])
    xp.subtract(r1, r3, out=v[3])
    return v.reshape(16, -1, c)


def input_transform_adjoint(dv: Any, padded_shape: tuple[int, ...],
                            tiles_hw: tuple[int, int]) -> Any:
    """The gradient of the padded chunk from that of :func:`input_transform`'s result:
    ``B dV B^T`` of every tile, added where the (overlapping) tiles came from.

    Shape:
        dv: (16, N * Ht * Wt, C) -> padded_shape (N, Hp, Wp, C).
    """
    ht, wt = tiles_hw
    n, hp, wp, c = padded_shape
    v0, v1, v2, v3 = dv.reshape(4, 4, n, ht, wt, c)
    dz = xp.zeros((4, n, 2 * ht + 2, wt, c), dtype=dv.dtype)
    _rows(dz, 0, ht)[...] = v0
    _rows(dz, 1, ht)[...] = v1 - v2 + v3
    _rows(dz, 2, ht)[...] += v1 + v2 - v0
    _rows(dz, 3, ht)[...] -= v3
    z0, z1, z2, z3 = dz
    even = xp.zeros((n, 2 * ht + 2, wt + 1, c), dtype=dv.dtype)
    odd = xp.zeros_like(even)
    even[:, :, :wt] = z0
    odd[:, :, :wt] = z1 - z2 + z3
    even[:, :, 1:] += z1 + z2 - z0
    odd[:, :, 1:] -= z3
    dxpad = xp.zeros(padded_shape, dtype=dv.dtype)
    dxpad[:, :2 * ht + 2, 0:2 * wt + 1:2] = even
    dxpad[:, :2 * ht + 2, 1:2 * wt + 2:2] = odd
    return dxpad


def input_gradient(dv: Any, pads: Pads, tiles_hw: tuple[int, int], out: Any) -> None:
    """Write into ``out`` the gradient of the unpadded chunk: :func:`input_transform_adjoint`
    with the padding cropped off.

    Shape:
        dv: (16, N * Ht * Wt, C); out: (N, H, W, C).
    """
    compiled.winograd_input_gradient(compiled_winograd.winograd3_input_adjoint,
                                     input_transform_adjoint, dv, pads, tiles_hw, out)


def output_pool(m: Any, out: Any, first: Any | None) -> None:
    """The 2x2 max pooling of each tile's outputs, :func:`output_transform`, into ``out``
    (and into ``first``, if given, the index of each window's first maximum), as
    :func:`cnnumpy.functional.pooling.max_of` of the four outputs.

    Shape:
        m: (16, T, F); out, first: (T, F).
    """
    compiled.winograd_output_pool(compiled_winograd.winograd3_output_pool,
                                   output_transform, m, out, first)


def output_transform(m: Any) -> Any:
    """``A^T M A``: each tile's 2x2 outputs from its 16 transformed-domain values.

    Shape:
        m: (16, T, F) -> (4, T, F).
    """
    m = m.reshape(4, 4, *m.shape[1:])
    p0 = m[0] + m[1]
    p0 += m[2]
    p1 = m[1] - m[2]
    p1 -= m[3]
    y = xp.empty((2, 2, *m.shape[2:]), dtype=m.dtype)
    for i, p in enumerate((p0, p1)):
        xp.add(p[0], p[1], out=y[i, 0])
        y[i, 0] += p[2]
        xp.subtract(p[1], p[2], out=y[i, 1])
        y[i, 1] -= p[3]
    return y.reshape(4, *m.shape[2:])


def output_transform_adjoint(dy: Any) -> Any:
    """``A dY A^T``: the gradient of :func:`output_transform`'s input.

    Shape:
        dy: (4, T, F) -> (16, T, F).
    """
    dy = dy.reshape(2, 2, *dy.shape[1:])
    dp = xp.empty((2, 4, *dy.shape[2:]), dtype=dy.dtype)  # [i]: row i's column adjoint
    for i in range(2):
        dp[i, 0] = dy[i, 0]
        xp.add(dy[i, 0], dy[i, 1], out=dp[i, 1])
        xp.subtract(dy[i, 0], dy[i, 1], out=dp[i, 2])
        xp.negative(dy[i, 1], out=dp[i, 3])
    dm = xp.empty((4, 4, *dy.shape[2:]), dtype=dy.dtype)
    dm[0] = dp[0]
    xp.add(dp[0], dp[1], out=dm[1])
    xp.subtract(dp[0], dp[1], out=dm[2])
    xp.negative(dp[1], out=dm[3])
    return dm.reshape(16, *dy.shape[2:])


_BY_SIZE = {(3, 3): sys.modules[__name__], (5, 5): winograd5}
