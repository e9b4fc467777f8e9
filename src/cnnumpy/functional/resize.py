"""Upsampling of channels-last (NHWC) images by integer factors, and its gradient.

Nearest neighbour repeats every pixel ``sh`` times down and ``sw`` times across:

    y[n, i, j, c] = x[n, i // sh, j // sw, c]

so its gradient sums each ``sh x sw`` block of ``dy``.

Bilinear interpolation is separable: each axis is a linear map ``A`` (output size by input
size) with at most two nonzeros per row, and ``y = A_h x A_w^T`` on every channel of every
image. The source coordinate of output row ``o`` is that of PyTorch's ``align_corners=False``
and Keras' (half-pixel centres):

    src = (o + 0.5) / s - 0.5, clamped below at 0;   i0 = floor(src), i1 = min(i0 + 1, H - 1)
    y[o] = (1 - (src - i0)) * x[i0] + (src - i0) * x[i1]

The gradient is the transposed map, ``dx = A_h^T dy A_w``: every array call runs over the whole
batch, and the maps are small (for example 56 x 28 to upsample a 28-pixel axis twofold).
"""

from __future__ import annotations

from typing import Any

from cnnumpy.backend import xp

INTERPOLATIONS = ("nearest", "bilinear")
"""The interpolations :func:`upsample2d` knows."""


def upsample_nearest(x: Any, size: tuple[int, int]) -> Any:
    """Repeat each pixel ``size = (sh, sw)`` times.

    Shape:
        x (N, H, W, C) -> (N, H * sh, W * sw, C).
    """
    n, h, w, c = x.shape
    sh, sw = size
    blocks = xp.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c))
    return blocks.reshape(n, h * sh, w * sw, c)


def upsample_nearest_backward(dy: Any, size: tuple[int, int]) -> Any:
    """The gradient of :func:`upsample_nearest`: the sum over each ``sh x sw`` block.

    Shape:
        dy (N, H * sh, W * sw, C) -> (N, H, W, C).
    """
    n, ho, wo, c = dy.shape
    sh, sw = size
    return dy.reshape(n, ho // sh, sh, wo // sw, sw, c).sum(axis=(2, 4))


def linear_map(size: int, scale: int, dtype: Any) -> Any:
    """The ``(size * scale, size)`` matrix of 1-D linear interpolation (half-pixel centres).

    Each row holds the weights ``1 - t`` and ``t`` of the two source pixels of one output pixel
    (both on the same pixel at the borders).
    """
    out = xp.arange(size * scale)
    src = xp.maximum((out + 0.5) / scale - 0.5, 0.0)
    i0 = xp.floor(src).astype(xp.int64)
    i1 = xp.minimum(i0 + 1, size - 1)
    t = src - i0
    a = xp.zeros((size * scale, size), dtype=dtype)
    xp.add.at(a, (out, i0), 1 - t)  # add: i0 and i1 coincide at the last pixel
    xp.add.at(a, (out, i1), t)
    return a


def upsample_bilinear(x: Any, size: tuple[int, int]) -> Any:
    """Bilinear upsampling by ``size = (sh, sw)`` (PyTorch ``align_corners=False``).

    Shape:
        x (N, H, W, C) -> (N, H * sh, W * sw, C).
    """
    n, h, w, c = x.shape
    a_h, a_w = linear_map(h, size[0], x.dtype), linear_map(w, size[1], x.dtype)
    rows = xp.matmul(a_h, x.reshape(n, h, w * c))  # (N, Ho, W * C)
    return xp.matmul(a_w, rows.reshape(n * len(a_h), w, c)).reshape(n, len(a_h), len(a_w), c)


def upsample_bilinear_backward(dy: Any, size: tuple[int, int]) -> Any:
    """The gradient of :func:`upsample_bilinear`: the transposed maps.

    Shape:
        dy (N, H * sh, W * sw, C) -> (N, H, W, C).
    """
    n, ho, wo, c = dy.shape
    h, w = ho // size[0], wo // size[1]
    a_h, a_w = linear_map(h, size[0], dy.dtype), linear_map(w, size[1], dy.dtype)
    cols = xp.matmul(a_w.T, dy.reshape(n * ho, wo, c))  # (N * Ho, W, C)
    return xp.matmul(a_h.T, cols.reshape(n, ho, w * c)).reshape(n, h, w, c)


def upsample2d(x: Any, size: tuple[int, int], interpolation: str = "nearest") -> Any:
    """Upsample ``x`` by ``size = (sh, sw)`` with "nearest" or "bilinear" interpolation.

    Shape:
        x (N, H, W, C) -> (N, H * sh, W * sw, C).
    """
    if interpolation == "nearest":
        return upsample_nearest(x, size)
    if interpolation == "bilinear":
        return upsample_bilinear(x, size)
    raise ValueError(f"upsample2d: interpolation must be one of {INTERPOLATIONS}, "
                     f"received interpolation={interpolation!r}")


def upsample2d_backward(dy: Any, size: tuple[int, int], interpolation: str = "nearest") -> Any:
    """The gradient of :func:`upsample2d` with respect to its input.

    Shape:
        dy (N, H * sh, W * sw, C) -> (N, H, W, C).
    """
    if interpolation == "nearest":
        return upsample_nearest_backward(dy, size)
    if interpolation == "bilinear":
        return upsample_bilinear_backward(dy, size)
    raise ValueError(f"upsample2d_backward: interpolation must be one of {INTERPOLATIONS}, "
                     f"received interpolation={interpolation!r}")
