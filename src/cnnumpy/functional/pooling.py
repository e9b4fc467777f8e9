"""Pooling kernels for channels-last (NHWC) images, as pure forward/backward pairs.

Every ``*_forward`` returns ``(y, cache)`` and the matching ``*_backward(dy, cache)`` returns
``dx``. Windowed pools loop only over the ``pool_h * pool_w`` window offsets: for an offset
``(i, j)`` the strided slice ``x[:, i::sh, j::sw, :]`` holds that element of every window at
once, so each step is one vectorized operation over the whole batch.

Padding follows TensorFlow/Keras: "valid" uses no padding; "same" gives
``out = ceil(in / stride)`` with ``total = max((out - 1) * stride + k - in, 0)`` padded
elements, ``total // 2`` of them before (top/left) and the rest after (bottom/right).
Max pooling pads with ``-inf`` (never selected); average pooling divides by the number of
real elements in each window (PyTorch's ``count_include_pad=False``).
"""

from __future__ import annotations

import math
from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional.im2col import _pad

PADDINGS = ("valid", "same")


def pool_output_size(size: int, pool: int, stride: int, padding: str) -> int:
    """Output length along one axis (may be ``<= 0`` when "valid" and ``pool > size``)."""
    if padding == "same":
        return -(-size // stride)
    if padding == "valid":
        return (size - pool) // stride + 1
    raise ValueError(f"padding must be one of {PADDINGS}, received padding={padding!r}")


def pool_padding(size: int, pool: int, stride: int, padding: str) -> tuple[int, int, int]:
    """Return ``(out, pad_before, pad_after)`` along one axis."""
    out = pool_output_size(size, pool, stride, padding)
    if padding == "valid":
        return out, 0, 0
    total = max((out - 1) * stride + pool - size, 0)
    return out, total // 2, total - total // 2


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _geometry(x_shape: tuple[int, ...], pool_size: Any, strides: Any, padding: str) -> tuple:
    """Window sizes, strides, output sizes and the (before, after) padding of both axes."""
    (kh, kw), (sh, sw) = _pair(pool_size), _pair(strides)
    oh, top, bottom = pool_padding(x_shape[1], kh, sh, padding)
    ow, left, right = pool_padding(x_shape[2], kw, sw, padding)
    if oh < 1 or ow < 1:
        raise ValueError(f"pool window {(kh, kw)} does not fit an input of spatial size "
                         f"{tuple(x_shape[1:3])} with padding={padding!r}")
    return (kh, kw), (sh, sw), (oh, ow), ((top, bottom), (left, right))


def _crop(a: Any, pads: tuple) -> Any:
    (top, bottom), (left, right) = pads
    return a[:, top:a.shape[1] - bottom, left:a.shape[2] - right, :]


def _window(i: int, j: int, strides: tuple[int, int], out: tuple[int, int]) -> tuple:
    """Index selecting offset ``(i, j)`` of every window: one element per output position."""
    (sh, sw), (oh, ow) = strides, out
    return (slice(None), slice(i, i + sh * (oh - 1) + 1, sh),
            slice(j, j + sw * (ow - 1) + 1, sw), slice(None))


def _batch_parts(x_shape: tuple[int, ...]) -> list[slice]:
    """One slice of the batch per thread, or the whole batch when it is too small to split."""
    n = x_shape[0]
    parts = min(n, backend.get_num_threads())
    if parts < 2 or math.prod(x_shape) < PARALLEL_MIN_SIZE:
        return [slice(0, n)]
    return backend.batch_slices(n, parts)


PARALLEL_MIN_SIZE = 2**19
"""Inputs with fewer elements are pooled in one piece, without the threads."""


def max_pool2d_forward(x: Any, pool_size: Any, strides: Any, padding: str,
                       training: bool = True) -> tuple[Any, tuple]:
    """Max pooling: each output is the largest element of its window.

    When ``training``, it also keeps which offset of each window held the first maximum (in
    row-major window order), as one small integer per output, for the backward pass.
    Otherwise it keeps a reference to the (padded) input instead, and the backward pass, if
    called, finds those offsets itself: inference pays only for the maxima.

    Args:
        x: images, channels last.
        pool_size: window ``(pool_h, pool_w)`` (an int means a square window).
        strides: ``(stride_h, stride_w)`` (an int means the same stride on both axes).
        padding: "valid" or "same".
        training: compute the offsets of the maxima now (for a backward pass to come).

    Shape:
        x: (N, H, W, C) -> y: (N, H_out, W_out, C).
    """
    (kh, kw), st, out, pads = _geometry(x.shape, pool_size, strides, padding)
    xp_ = _pad(x, pads, -xp.inf)
    y = xp.empty((x.shape[0], *out, x.shape[3]), dtype=x.dtype)
    if training:
        first = _first_maxima(xp_, y, (kh, kw), st, out)
        return y, (xp_.shape, first, (kh, kw), st, out, pads, None)

    def work(part: slice) -> None:
        max_of(_windows(xp_[part], (kh, kw), st, out), y[part])

    backend.parallel_map(work, _batch_parts(xp_.shape))
    return y, (xp_.shape, None, (kh, kw), st, out, pads, xp_)


def _windows(xp_: Any, pool: tuple[int, int], st: tuple[int, int],
             out: tuple[int, int]) -> list[Any]:
    """Views of the padded input, one per window offset in row-major order."""
    return [xp_[_window(i, j, st, out)] for i in range(pool[0]) for j in range(pool[1])]


def max_of(arrays: Any, out: Any, first: Any | None = None) -> None:
    """``out = max(arrays[0], arrays[1], ...)`` elementwise; with ``first``, also the index
    of the first array holding each maximum (ties keep the earlier index).

    Shape:
        every array, ``out`` and ``first``: the same shape.
    """
    if first is None and len(arrays) > 1:  # one pass fewer than copying arrays[0] first
        xp.maximum(arrays[0], arrays[1], out=out)
        for a in arrays[2:]:
            xp.maximum(out, a, out=out)
        return
    xp.copyto(out, arrays[0])
    if first is None:
        return
    first[...] = 0
    greater = xp.empty(out.shape, dtype=bool)
    for k in range(1, len(arrays)):
        xp.greater(arrays[k], out, out=greater)  # strictly: ties keep the first maximum
        xp.maximum(out, arrays[k], out=out)
        # first = k where greater, else unchanged (k is above every earlier index); this
        # arithmetic form is several times faster than a masked assignment
        xp.maximum(first, greater * first.dtype.type(k), out=first)


def window_grads(dy: Any, first: Any, windows: int) -> Any:
    """The gradients of :func:`max_of`'s ``windows`` inputs from its output's gradient
    ``dy`` and ``first``: block ``k`` holds ``dy`` where ``first == k``, zeros elsewhere
    (for a convolution before pooling, its output gradient in window order).

    Shape:
        dy, first: (...) -> (windows, ...).
    """
    blocks = xp.empty((windows, *dy.shape), dtype=dy.dtype)
    hit = xp.empty(dy.shape, dtype=bool)
    for k in range(windows):
        xp.equal(first, k, out=hit)
        xp.multiply(dy, hit, out=blocks[k])
    return blocks


def _first_maxima(xp_: Any, y: Any, pool: tuple[int, int], st: tuple[int, int],
                  out: tuple[int, int]) -> Any:
    """Fill ``y`` with the window maxima of the padded input and return, per output, the
    row-major offset of the first maximum in its window."""
    first = xp.empty(y.shape, dtype=xp.min_scalar_type(pool[0] * pool[1] - 1))

    def work(part: slice) -> None:
        max_of(_windows(xp_[part], pool, st, out), y[part], first[part])

    backend.parallel_map(work, _batch_parts(xp_.shape))
    return first


def max_pool2d_backward(dy: Any, cache: tuple) -> Any:
    """Gradient of max pooling: each output's gradient goes to exactly one input.

    Ties go to the first maximum in row-major window order (as in PyTorch); overlapping
    windows (stride < pool) add their contributions.

    Shape:
        dy: (N, H_out, W_out, C) -> dx: (N, H, W, C).
    """
    padded_shape, first, (kh, kw), st, out, pads, padded = cache
    if first is None:  # the forward pass ran for inference: find the maxima now
        first = _first_maxima(padded, xp.empty(dy.shape, dtype=padded.dtype), (kh, kw), st, out)
    disjoint = st[0] >= kh and st[1] >= kw  # each input in at most one window: write, not add
    tiled = st == (kh, kw) and padded_shape[1:3] == (out[0] * kh, out[1] * kw)
    dxp = (xp.empty if tiled else xp.zeros)(padded_shape, dtype=dy.dtype)

    def work(part: slice) -> None:
        hit = xp.empty(first[part].shape, dtype=bool)
        for k in range(kh * kw):
            xp.equal(first[part], k, out=hit)
            target = dxp[part][_window(k // kw, k % kw, st, out)]
            if disjoint:
                xp.multiply(dy[part], hit, out=target)
            else:
                target += dy[part] * hit

    backend.parallel_map(work, _batch_parts(padded_shape))
    return _crop(dxp, pads)


def _real_counts(size: int, pool: int, stride: int, out: int, before: int) -> Any:
    """Number of non-padded elements in each window along one axis."""
    start = xp.arange(out) * stride - before
    return xp.minimum(start + pool, size) - xp.maximum(start, 0)


def avg_pool2d_forward(x: Any, pool_size: Any, strides: Any, padding: str) -> tuple[Any, tuple]:
    """Average pooling over the real (non-padded) elements of each window.

    Args:
        x: images, channels last.
        pool_size: window ``(pool_h, pool_w)`` (an int means a square window).
        strides: ``(stride_h, stride_w)`` (an int means the same stride on both axes).
        padding: "valid" or "same".

    Shape:
        x: (N, H, W, C) -> y: (N, H_out, W_out, C).
    """
    (kh, kw), st, out, pads = _geometry(x.shape, pool_size, strides, padding)
    counts_h = _real_counts(x.shape[1], kh, st[0], out[0], pads[0][0])
    counts_w = _real_counts(x.shape[2], kw, st[1], out[1], pads[1][0])
    inv_count = (1.0 / (counts_h[:, None] * counts_w[None, :])).astype(x.dtype)[None, :, :, None]
    xp_ = _pad(x, pads, 0)
    total = None
    for i in range(kh):
        for j in range(kw):
            window = xp_[_window(i, j, st, out)]
            total = window.copy() if total is None else xp.add(total, window, out=total)
    return total * inv_count, (xp_.shape, inv_count, (kh, kw), st, out, pads)


def avg_pool2d_backward(dy: Any, cache: tuple) -> Any:
    """Gradient of average pooling: each output's gradient is shared by its real elements.

    Shape:
        dy: (N, H_out, W_out, C) -> dx: (N, H, W, C).
    """
    padded_shape, inv_count, (kh, kw), st, out, pads = cache
    share = dy * inv_count
    dxp = xp.zeros(padded_shape, dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[_window(i, j, st, out)] += share
    return _crop(dxp, pads)


def global_avg_pool2d_forward(x: Any) -> tuple[Any, tuple]:
    """Mean over the spatial axes.

    Shape:
        x: (N, H, W, C) -> y: (N, C).
    """
    return xp.mean(x, axis=(1, 2)), (x.shape,)


def global_avg_pool2d_backward(dy: Any, cache: tuple) -> Any:
    """Shape: dy: (N, C) -> dx: (N, H, W, C)."""
    (shape,) = cache
    share = dy / (shape[1] * shape[2])
    return xp.ascontiguousarray(xp.broadcast_to(share[:, None, None, :], shape))


def global_max_pool2d_forward(x: Any) -> tuple[Any, tuple]:
    """Maximum over the spatial axes.

    Shape:
        x: (N, H, W, C) -> y: (N, C).
    """
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    first = xp.argmax(flat, axis=1)  # first maximum in row-major order, as PyTorch
    return xp.max(flat, axis=1), (x.shape, first)


def global_max_pool2d_backward(dy: Any, cache: tuple) -> Any:
    """Gradient to the first maximum of each (image, channel), like PyTorch's max_pool2d.

    Shape:
        dy: (N, C) -> dx: (N, H, W, C).
    """
    shape, first = cache
    positions = xp.arange(shape[1] * shape[2])[None, :, None]
    dx = xp.where(positions == first[:, None, :], dy[:, None, :], 0).astype(dy.dtype, copy=False)
    return dx.reshape(shape)
