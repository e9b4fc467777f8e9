"""A convolution followed by max pooling, from each pooling window's receptive field.

For stride 1 and no dilation, the ph x pw outputs of one pooling window all read a
(kh + ph - 1) x (kw + pw - 1) patch of the input, its receptive field: 16 values per channel
for 3x3 kernels and 2x2 windows, where the window-order patches of
:mod:`cnnumpy.functional.fast.conv_pool` gather 36. With few input channels the gathers are what
costs most, so these functions gather each window's field once and multiply it by the kernel
placed at each of the window's offsets (:func:`wide_kernel`), which costs more
multiplications (16 / 9 as many for 3x3) in one wider product.
:func:`cnnumpy.functional.fast.conv_pool.conv2d_maxpool_forward` chooses this path.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` then
:func:`cnnumpy.functional.pooling.max_pool2d_forward`, and backward, within float rounding.
Checked by ``tests/functional/fast/test_conv_pool.py``
(``test_window_field_path_matches_the_naive_convolution_and_pool``).
"""

from __future__ import annotations

from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled_pool
from cnnumpy.functional.im2col import Pads, _pad


def wide_kernel(kernel: Any, pool: tuple[int, int]) -> Any:
    """The kernel placed at each offset of a pooling window in the window's receptive field,
    zeros elsewhere: one column per window element and filter.

    Shape:
        kernel: (kh, kw, C, F) -> ((kh + ph - 1) * (kw + pw - 1) * C, ph * pw * F).
    """
    kh, kw, c, f = kernel.shape
    ph, pw = pool
    wide = xp.zeros((kh + ph - 1, kw + pw - 1, c, ph, pw, f), dtype=kernel.dtype)
    for i in range(ph):
        for j in range(pw):
            wide[i:i + kh, j:j + kw, :, i, j] = kernel
    return wide.reshape(-1, ph * pw * f)


def gather(xpad: Any, kernel_hw: tuple[int, int], pool: tuple[int, int],
           pooled_hw: tuple[int, int]) -> Any:
    """Each pooling window's receptive field (stride 1, no dilation), one column per window
    in image order; a copy.

    Shape:
        xpad: (N, Hp, Wp, C) -> ((kh + ph - 1) * (kw + pw - 1) * C, N * H2 * W2).
    """
    (ph, pw), (h2, w2) = pool, pooled_hw
    rh, rw = kernel_hw[0] + ph - 1, kernel_hw[1] + pw - 1
    n, _, _, c = xpad.shape
    s_n, s_h, s_w, s_c = xpad.strides
    fields = xp.lib.stride_tricks.as_strided(  # (rh, rw, C, N, H2, W2), a view
        xpad, (rh, rw, c, n, h2, w2), (s_h, s_w, s_c, s_n, ph * s_h, pw * s_w),
        writeable=False)
    return xp.ascontiguousarray(fields).reshape(rh * rw * c, n * h2 * w2)


def forward(x: Any, kernel: Any, bias: Any, pads: Pads, pool: tuple[int, int], y: Any,
            training: bool, keep_bytes: int) -> tuple[list[slice], dict | None, dict | None]:
    """``y = max_pool(conv2d(x) + bias)`` (stride 1, no dilation; pooling windows ``pool``
    with stride ``pool``), a chunk of images at a time on the library's threads: each
    window's receptive field is gathered once (:func:`gather`) and multiplied by
    :func:`wide_kernel`: one product gives every window element's output. The product is
    made transposed, ``(ph * pw * F, K) @ (K, windows)``, so that each window element's
    outputs are a contiguous block for the pooling; training keeps the index of each
    maximum in that layout, ``(F, windows)`` per chunk, and the fields themselves when they
    take at most ``keep_bytes``. For a 1-channel 3x3 layer with 8 filters, 128 images, one
    thread: 1.2 ms against 3.1 for the window-order patches in training.

    Returns:
        ``(parts, kept, firsts)``: the chunks of images; the fields kept, or None; per
        chunk, the index of each window's maximum (None unless ``training``). Pass them to
        :func:`backward`.

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, C, F); y: (N, H2, W2, F).
    """
    kh, kw, c, f = kernel.shape
    (ph, pw), (n, h2, w2, _) = pool, y.shape
    wide_t = xp.ascontiguousarray(wide_kernel(kernel, pool).T)
    field_bytes = wide_t.shape[1] * h2 * w2 * x.itemsize  # per image
    keep: dict[int, Any] | None = {} if training and n * field_bytes <= keep_bytes else None
    firsts: dict[int, Any] | None = {} if training else None
    index_type = xp.min_scalar_type(ph * pw - 1)
    bias_column = None if bias is None else xp.asarray(bias, dtype=y.dtype).reshape(f, 1)

    def work(part: slice) -> None:
        cols_t = gather(_pad(x[part], pads), (kh, kw), pool, (h2, w2))
        if keep is not None:
            keep[part.start] = cols_t  # each chunk its own key: safe from several threads
        blocks = (wide_t @ cols_t).reshape(ph * pw, f, -1)  # [k]: window element k's outputs
        pooled = xp.empty(blocks.shape[1:], dtype=y.dtype)
        first_t = None
        if firsts is not None:
            first_t = firsts[part.start] = xp.empty(pooled.shape, dtype=index_type)
        compiled_pool.max_of(blocks, pooled, first_t)
        if bias_column is not None:
            pooled += bias_column  # along rows here: a quarter of the time it takes in y
        out = y[part]
        out[...] = pooled.T.reshape(out.shape)

    per_window = wide_t.shape[1] + ph * pw * f  # values gathered and computed
    parts = conv._chunks(n, h2 * w2 * per_window * x.itemsize)
    backend.parallel_map(work, parts)
    return parts, keep, firsts


def backward(dy: Any, x: Any, kernel: Any, pads: Pads, pool: tuple[int, int],
             parts: list[slice], firsts: dict, kept: dict | None, has_bias: bool,
             need_dx: bool) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dkernel, dbias)`` of :func:`forward`, over its chunks, in its
    transposed layout: the window gradients ``(ph * pw * F, windows)`` times the fields
    give the wide kernel's gradient (summed over chunks, then folded back into the kernel's
    taps once); the wide kernel times them, each field's gradient, added back at the field's
    (kh + ph - 1) * (kw + pw - 1) offsets. ``dx`` is None unless ``need_dx``, ``dbias``
    None without a bias.

    Shape:
        dy: (N, H2, W2, F); dx: (N, H, W, C); dkernel: (kh, kw, C, F); dbias: (F,).
    """
    (ph, pw), (kh, kw, c, f) = pool, kernel.shape
    _, h2, w2, _ = dy.shape
    rh, rw = kh + ph - 1, kw + pw - 1
    (top, bottom), (left, right) = pads
    dy = dy.astype(x.dtype, copy=False)
    wide = wide_kernel(kernel, (ph, pw)) if need_dx else None
    dx = xp.empty(x.shape, dtype=x.dtype) if need_dx else None

    def work(part: slice) -> Any:
        dy_t = xp.ascontiguousarray(dy[part].reshape(-1, f).T)  # (F, windows)
        blocks = compiled_pool.window_grads(dy_t, firsts[part.start], ph * pw)
        blocks = blocks.reshape(ph * pw * f, -1)  # (window element, filter) x windows
        cols_t = kept[part.start] if kept is not None else gather(
            _pad(x[part], pads), (kh, kw), (ph, pw), (h2, w2))
        sums = (cols_t @ blocks.T, dy_t.sum(axis=1) if has_bias else None)
        if dx is not None:
            count, h, w, _ = dx[part].shape
            grads = (wide @ blocks).reshape(rh, rw, c, count, h2, w2)
            dxpad = xp.zeros((count, h + top + bottom, w + left + right, c), dtype=dx.dtype)
            for u in range(rh):
                for v in range(rw):
                    dxpad[:, u:u + h2 * ph:ph, v:v + w2 * pw:pw] += \
                        grads[u, v].transpose(1, 2, 3, 0)
            dx[part] = dxpad[:, top:top + h, left:left + w]
        return sums

    dwide, dbias = conv.sum_in_order(backend.parallel_map(work, parts), has_bias)
    dwide = dwide.reshape(rh, rw, c, ph, pw, f)
    dkernel = xp.zeros(kernel.shape, dtype=kernel.dtype)
    for i in range(ph):
        for j in range(pw):
            dkernel += dwide[i:i + kh, j:j + kw, :, i, j]
    return dx, dkernel, dbias
