"""Pure kernels for the augmentation layers: windows (shifts and crops) and resampling
(rotations), each with its exact transpose, and boxes (erasing), vectorized over the batch
with ``xp`` only."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.backend import xp


def window(x: Any, top: Any, left: Any, out_h: int, out_w: int, fill: float = 0.0) -> Any:
    """``out[n, r, c] = x[n, r + top[n], c + left[n]]``, or ``fill`` outside ``x``.

    Shape:
        x (N, H, W, C), top and left (N,) ints -> (N, out_h, out_w, C).
    """
    n, h, w = x.shape[:3]
    rows = xp.arange(out_h)[None, :] + top[:, None]
    cols = xp.arange(out_w)[None, :] + left[:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = x[xp.arange(n)[:, None, None], xp.clip(rows, 0, h - 1)[:, :, None],
            xp.clip(cols, 0, w - 1)[:, None, :]]
    return xp.where(inside[..., None], out, x.dtype.type(fill))


def window_backward(dy: Any, top: Any, left: Any, h: int, w: int) -> Any:
    """The transpose of :func:`window`: each input pixel gets the gradient of the output
    pixel it was copied to (0 where it fell outside the window)."""
    return window(dy, -top, -left, h, w, 0.0)


def rotation_taps(angles: Any, h: int, w: int, interpolation: str) -> list[tuple]:
    """Where each output pixel samples the input when rotated by ``angles`` (radians,
    counter-clockwise) about the image center: a list of ``(rows, cols, weights)``, one per
    interpolation tap, each (N, h, w); rows/cols are clipped and weights are 0 outside.
    """
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y = xp.arange(h, dtype=np.float64)[None, :, None] - cy
    x = xp.arange(w, dtype=np.float64)[None, None, :] - cx
    cos, sin = xp.cos(angles)[:, None, None], xp.sin(angles)[:, None, None]
    src_x = cos * x - sin * y + cx
    src_y = sin * x + cos * y + cy
    if interpolation == "nearest":
        corners = [(xp.floor(src_y + 0.5), xp.floor(src_x + 0.5), xp.ones_like(src_x))]
    else:
        y0, x0 = xp.floor(src_y), xp.floor(src_x)
        fy, fx = src_y - y0, src_x - x0
        corners = [(y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx),
                   (y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx)]
    taps = []
    for rows, cols, weight in corners:
        inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
        taps.append((xp.clip(rows, 0, h - 1).astype(np.int64),
                     xp.clip(cols, 0, w - 1).astype(np.int64), xp.where(inside, weight, 0.0)))
    return taps


def sample(x: Any, taps: list[tuple], fill: float = 0.0) -> Any:
    """Weighted sum of the taps' pixels; the weight falling outside the image takes ``fill``.

    Shape:
        x (N, H, W, C) -> (N, h, w, C) for taps of shape (N, h, w).
    """
    n = xp.arange(x.shape[0])[:, None, None]
    out = xp.zeros((*taps[0][0].shape, x.shape[3]), dtype=x.dtype)
    total: Any = 0.0  # becomes an array of the summed weights
    for rows, cols, weight in taps:
        out += weight.astype(x.dtype)[..., None] * x[n, rows, cols]
        total = total + weight
    return out + (fill * (1.0 - total)).astype(x.dtype)[..., None] if fill else out


def sample_backward(dy: Any, taps: list[tuple], h: int, w: int) -> Any:
    """The transpose of :func:`sample`: scatter-add each tap's weighted gradient."""
    n, c = dy.shape[0], dy.shape[3]
    index, values = [], []
    for rows, cols, weight in taps:
        pixel = (xp.arange(n)[:, None, None] * h + rows) * w + cols
        index.append((pixel[..., None] * c + xp.arange(c)).reshape(-1))
        values.append((weight[..., None] * dy).reshape(-1))
    dx = xp.bincount(xp.concatenate(index), weights=xp.concatenate(values),
                     minlength=n * h * w * c)
    return dx.reshape(n, h, w, c).astype(dy.dtype)


def box_mask(top: Any, left: Any, height: Any, width: Any, h: int, w: int) -> Any:
    """``mask[n, r, c]``: whether pixel ``(r, c)`` lies in image ``n``'s box, the rows
    ``top[n] <= r < top[n] + height[n]`` and columns ``left[n] <= c < left[n] + width[n]``.

    Shape:
        top, left, height, width (N,) ints -> (N, h, w, 1) bools.
    """
    rows, cols = xp.arange(h)[None, :], xp.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[..., None]
