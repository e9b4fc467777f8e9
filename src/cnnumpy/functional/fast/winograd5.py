"""Winograd's minimal filtering F(2x2, 5x5): a 5x5 stride-1 convolution in 2.8x fewer
multiplications, with the same functions as :mod:`cnnumpy.functional.fast.winograd` (F(2x2,
3x3)), whose docstring explains the scheme.

Each 2x2 output tile needs a 6x6 input tile; in the transformed domain a tile is 36 values
per channel, so a chunk's convolution is 36 products ``(T, C) @ (C, F)`` instead of one
``(4T, 25C) @ (25C, F)``. The transforms come from the Toom-Cook construction on the
interpolation points 0, 1, -1, 2, -2 and infinity (:func:`toom_cook`); their entries are
not all 0 and 1, so they are applied as small matrix products: the input tiles are gathered
(36 values per tile, against 25 per output position for im2col) and multiplied by
``B^T (x) B^T`` (a Kronecker product), the outputs by ``A^T (x) A^T``. Float32 results differ
from the direct convolution by a few parts in a million of the output's scale.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` (5x5, stride 1) within float
rounding. Checked by ``tests/functional/fast/test_winograd.py`` (the same tests, for 5x5).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled, compiled_winograd, winograd43
from cnnumpy.functional.im2col import Pads

VALUES = 36
"""Transformed-domain values per tile."""

POINTS = (0.0, 1.0, -1.0, 2.0, -2.0)
"""The finite interpolation points; the last one is infinity."""


def toom_cook(r: int, points: tuple[float, ...]) -> tuple[Any, Any, Any]:
    """``(A^T, G, B^T)`` of F(2, r) on ``points`` (``r`` of them) and infinity, such that a
    correlation's two outputs ``y_i = sum_j d[i + j] g[j]`` are ``A^T ((G g) * (B^T d))``.

    Shape:
        A^T: (2, r + 1); G: (r + 1, r); B^T: (r + 1, r + 1).
    """
    n, p = r + 1, np.asarray(points, dtype=np.float64)
    at, g, bt = np.zeros((2, n)), np.zeros((n, r)), np.zeros((n, n))
    for i in range(2):
        at[i, :n - 1] = p**i
    at[1, n - 1] = 1.0
    for k in range(n - 1):
        others = np.delete(p, k)
        g[k] = p[k] ** np.arange(r) / np.prod(p[k] - others)
        coefficients = np.poly(others)[::-1]  # prod(x - others), lowest power first
        bt[k, :coefficients.size] = coefficients
    g[n - 1, r - 1] = 1.0
    bt[n - 1] = np.poly(p)[::-1]
    return at, g, bt


@functools.cache
def _matrices(dtype: str) -> tuple[Any, Any, Any]:
    """``G``, ``B^T (x) B^T`` and ``A^T (x) A^T`` in ``dtype``."""
    at, g, bt = toom_cook(5, POINTS)
    return (xp.asarray(g, dtype=dtype), xp.asarray(np.kron(bt, bt), dtype=dtype),
            xp.asarray(np.kron(at, at), dtype=dtype))


def kernel_transform(kernel: Any) -> Any:
    """``G g G^T`` for every channel pair.

    Shape:
        kernel: (5, 5, C, F) -> (36, C, F).
    """
    g = _matrices(kernel.dtype.name)[0]
    return winograd43.sandwich(g, kernel).reshape(VALUES, *kernel.shape[2:])


def kernel_transform_adjoint(du: Any) -> Any:
    """``G^T dU G``: the kernel gradient from its transformed-domain gradient.

    Shape:
        du: (36, C, F) -> (5, 5, C, F).
    """
    g = _matrices(du.dtype.name)[0]
    return winograd43.sandwich(g.T, du.reshape(6, 6, *du.shape[1:]))


def _tiles(xpad: Any, tiles_hw: tuple[int, int]) -> Any:
    """Every 6x6 input tile (stride 2) as a read-only view, tile offsets first.

    Shape:
        xpad: (N, Hp, Wp, C) -> (6, 6, N, Ht, Wt, C).
    """
    s_n, s_h, s_w, s_c = xpad.strides
    n, c = xpad.shape[0], xpad.shape[3]
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(6, 6, n, *tiles_hw, c),
        strides=(s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_c), writeable=False)


def input_transform(xpad: Any, tiles_hw: tuple[int, int]) -> Any:
    """``B^T d B`` for every 6x6 input tile ``d`` (stride 2) of a padded chunk.

    Shape:
        xpad: (N, Hp, Wp, C), Hp >= 2 Ht + 4, Wp >= 2 Wt + 4 -> (36, N * Ht * Wt, C).
    """
    if compiled.usable(xpad):
        return compiled_winograd.winograd5_input(xpad, tiles_hw)
    tiles = xp.ascontiguousarray(_tiles(xpad, tiles_hw)).reshape(VALUES, -1)
    return (_matrices(xpad.dtype.name)[1] @ tiles).reshape(VALUES, -1, xpad.shape[3])


def input_transform_adjoint(dv: Any, padded_shape: tuple[int, ...],
                            tiles_hw: tuple[int, int]) -> Any:
    """The gradient of the padded chunk from that of :func:`input_transform`'s result.

    Shape:
        dv: (36, N * Ht * Wt, C) -> padded_shape (N, Hp, Wp, C).
    """
    (ht, wt), (n, c) = tiles_hw, (padded_shape[0], padded_shape[3])
    dtiles = (_matrices(dv.dtype.name)[1].T @ dv.reshape(VALUES, -1)).reshape(
        6, 6, n, ht, wt, c)
    dxpad = xp.zeros(padded_shape, dtype=dv.dtype)
    for k in range(6):
        for m in range(6):
            dxpad[:, k:k + 2 * ht:2, m:m + 2 * wt:2] += dtiles[k, m]
    return dxpad


def input_gradient(dv: Any, pads: Pads, tiles_hw: tuple[int, int], out: Any) -> None:
    """Write into ``out`` the gradient of the unpadded chunk: :func:`input_transform_adjoint`
    with the padding cropped off.

    Shape:
        dv: (36, N * Ht * Wt, C); out: (N, H, W, C).
    """
    compiled.winograd_input_gradient(compiled_winograd.winograd5_input_adjoint,
                                     input_transform_adjoint, dv, pads, tiles_hw, out)


def output_pool(m: Any, out: Any, first: Any | None) -> None:
    """The 2x2 max pooling of each tile's outputs, :func:`output_transform`, into ``out``
    (and into ``first``, if given, the index of each window's first maximum), as
    :func:`cnnumpy.functional.pooling.max_of` of the four outputs.

    Shape:
        m: (36, T, F); out, first: (T, F).
    """
    compiled.winograd_output_pool(compiled_winograd.winograd5_output_pool,
                                   output_transform, m, out, first)


def output_transform(m: Any) -> Any:
    """``A^T M A``: each tile's 2x2 outputs from its 36 transformed-domain values.

    Shape:
        m: (36, T, F) -> (4, T, F).
    """
    return (_matrices(m.dtype.name)[2] @ m.reshape(VALUES, -1)).reshape(4, *m.shape[1:])


def output_transform_adjoint(dy: Any) -> Any:
    """``A dY A^T``: the gradient of :func:`output_transform`'s input.

    Shape:
        dy: (4, T, F) -> (36, T, F).
    """
    return (_matrices(dy.dtype.name)[2].T @ dy.reshape(4, -1)).reshape(VALUES, *dy.shape[1:])
