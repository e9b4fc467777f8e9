"""A convolution followed by non-overlapping max pooling, computed together.

``max_pool(conv2d(x) + bias)`` for pooling windows that tile the convolution's output (stride
equal to the window, no padding). Each chunk of images gathers its patches with the rows in
*window order*: all the first elements of every pooling window, then all the second ones,
and so on (``(ph, pw, N, Ho // ph, Wo // pw)``, row-major). The chunk's matrix product then
holds one contiguous block per window offset, and pooling is ``ph * pw - 1`` elementwise
maxima of whole blocks while they are in cache, instead of strided passes over a full-size
output in memory (measured 4-9x faster than :func:`cnnumpy.functional.pooling`'s windows).
Rows and columns of the convolution that no window covers are never computed. When the
whole batch's patches are small (:data:`KEEP_PATCHES_BYTES`), training keeps them for the
backward pass instead of gathering them again.

A 3x3 or 5x5 stride-1 convolution from :data:`cnnumpy.functional.fast.winograd.MIN_CHANNELS`
input channels up, with 2x2 pooling, goes by Winograd's minimal filtering instead
(:func:`cnnumpy.functional.fast.winograd.algorithm`): each 2x2 output tile is one pooling window,
so the output transform hands the pooling its four blocks in the same window order. A
stride-1 convolution from few channels goes by each pooling window's whole receptive field
(:data:`WINDOW_PATCHES`), in a transposed layout that backward keeps.

The bias is added after pooling: rounding is monotone, so ``max(a + b, c + b)`` equals
``max(a, c) + b`` exactly. Ties go to the first maximum in row-major window order, as in
:func:`cnnumpy.functional.pooling.max_pool2d_forward` and PyTorch.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` (with its bias and ReLU) then
:func:`cnnumpy.functional.pooling.max_pool2d_forward`, and their backward passes, within float
rounding. Checked by ``tests/functional/fast/test_conv_pool.py``
(``test_equals_the_two_kernels_it_replaces``,
``test_matches_the_naive_convolution_then_the_naive_pool``) and ``tests/test_passes.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional import conv
from cnnumpy.functional.fast import (
    compiled,
    compiled_conv_pool,
    compiled_pool,
    compiled_winograd43,
    compiled_winograd_rows,
    scratch,
    window_fields,
    winograd,
)
from cnnumpy.functional.im2col import Pads, _pad, _pair, im2col, output_hw, resolve_padding

KEEP_PATCHES_BYTES = 4 * 2**20
"""Training keeps a batch's patch matrices for backward when they take at most this much:
about what stays in cache until then. The prototype's model trained 7-10 % faster at batch
64 keeping them, and 20 % slower at batch 256 keeping 14 MiB (reading them back from memory
costs more than gathering them again from the smaller input)."""


WINDOW_PATCHES = True
"""With few input channels (:data:`cnnumpy.functional.conv.FEW_CHANNELS`), stride 1 and no
dilation, compute the convolution from each pooling window's whole receptive field
(:mod:`cnnumpy.functional.fast.window_fields`): (kh + ph - 1) * (kw + pw - 1) values per window
instead of ph * pw * kh * kw, for training and inference. A/B (training steps, batch 32 /
64 / 256): the prototype's model -15 / -2 to -5 / -15 %, LeNet-like -6 / +1.5 / -5 %;
inference at batch 256 -9 % and -4 %."""


class ConvPoolCache(NamedTuple):
    """What :func:`conv2d_maxpool_backward` needs: the input (its chunks are gathered again,
    unless ``patches`` holds them, chunk by chunk in ``parts``) and, per pooled output, the
    window offset of its maximum."""

    x: Any
    kernel: Any
    strides: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]
    pool: tuple[int, int]
    conv_hw: tuple[int, int]
    first: Any
    has_bias: bool
    parts: list[slice]
    patches: dict[int, Any] | None = None
    transformed_kernel: Any = None  # the Winograd path's, else None
    algorithm: Any = None  # and its module of transforms
    by_fields: bool = False  # the few-channel path's (``first`` then per chunk, (F, R))


def _window_patches(xpad: Any, kernel_hw: tuple[int, int], strides: tuple[int, int],
                    dilation: tuple[int, int], pool: tuple[int, int],
                    pooled_hw: tuple[int, int]) -> Any:
    """The receptive fields of the convolution outputs that pooling windows cover, as a matrix
    whose rows are in window order (see the module docstring); a copy.

    Shape:
        xpad: (N, Hp, Wp, C) -> (ph * pw * N * H2 * W2, kh * kw * C).
    """
    view = im2col(xpad, kernel_hw, strides, "valid", dilation)  # (N, Ho, Wo, kh, kw, C)
    (ph, pw), (h2, w2) = pool, pooled_hw
    n, _, _, kh, kw, c = view.shape
    view = view[:, :h2 * ph, :w2 * pw].reshape(n, h2, ph, w2, pw, kh, kw, c)
    return conv.patch_matrix(view, (2, 4, 0, 1, 3))  # rows (ph, pw, N, H2, W2)


def conv2d_maxpool_forward(x: Any, kernel: Any, bias: Any, strides: Any, padding: Any,
                           dilation: Any, pool: Any, training: bool = True
                           ) -> tuple[Any, ConvPoolCache]:
    """Max pooling with windows ``pool`` (stride ``pool``, no padding) of an ungrouped
    convolution plus bias.

    Args:
        x, kernel, bias, strides, padding, dilation: as for
            :func:`cnnumpy.functional.conv.conv2d_forward` (``groups=1``).
        pool: the pooling window, an int or ``(ph, pw)``; also its stride.
        training: keep, per output, which window offset held the maximum (for backward).

    Returns:
        ``(y, cache)``; pass ``cache`` to :func:`conv2d_maxpool_backward`.

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, C, F); y: (N, Ho // ph, Wo // pw, F), where
        (Ho, Wo) is the convolution's output size.
    """
    kh, kw, c, f = kernel.shape
    if x.ndim != 4 or x.shape[3] != c:
        raise ValueError(f"conv2d_maxpool_forward: input {x.shape} and kernel {kernel.shape} "
                         "do not match")
    strides, dilation, pool = _pair(strides), _pair(dilation), _pair(pool)
    pads = resolve_padding(padding, x.shape[1:3], (kh, kw), strides, dilation)
    (top, bottom), (left, right) = pads
    ho, wo = output_hw((x.shape[1] + top + bottom, x.shape[2] + left + right), (kh, kw),
                       strides, dilation)
    h2, w2 = ho // pool[0], wo // pool[1]
    if h2 < 1 or w2 < 1:
        raise ValueError(f"conv2d_maxpool_forward: pool window {pool} does not fit the "
                         f"convolution's output {(ho, wo)}")
    dtype = xp.result_type(x, kernel)
    x, kernel = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    flat_kernel = kernel.reshape(-1, f)
    n, windows = x.shape[0], pool[0] * pool[1]
    y = xp.empty((n, h2, w2, f), dtype=dtype)
    algorithm = winograd.algorithm(kernel.shape, strides, dilation) if pool == (2, 2) else None
    if (algorithm is None and WINDOW_PATCHES and c <= conv.FEW_CHANNELS
            and strides == (1, 1) and dilation == (1, 1)):
        parts, kept, firsts = window_fields.forward(x, kernel, bias, pads, pool, y, training,
                                                    KEEP_PATCHES_BYTES)
        return y, ConvPoolCache(x, kernel, strides, pads, dilation, pool, (ho, wo), firsts,
                                bias is not None, parts, kept, by_fields=True)
    first = xp.empty(y.shape, dtype=xp.min_scalar_type(windows - 1)) if training else None
    if algorithm is not None:
        return y, _winograd_forward(algorithm, x, kernel, bias, pads, (ho, wo), y, first)
    patch_bytes = ho * wo * kh * kw * c * x.itemsize  # per image
    parts = conv._chunks(n, patch_bytes)
    keep: dict[int, Any] | None = {} if training and n * patch_bytes <= KEEP_PATCHES_BYTES else None

    def work(part: slice) -> None:
        cols = _window_patches(_pad(x[part], pads), (kh, kw), strides, dilation, pool, (h2, w2))
        if keep is not None:
            keep[part.start] = cols  # each chunk its own key: safe from several threads
        out = y[part].reshape(-1, f)  # a view: the chunk's rows of y
        blocks = (cols @ flat_kernel).reshape(windows, -1, f)
        compiled_pool.max_of(blocks, out, None if first is None else first[part].reshape(-1, f))
        if bias is not None:
            out += bias

    backend.parallel_map(work, parts)
    return y, ConvPoolCache(x, kernel, strides, pads, dilation, pool,
                            (ho, wo), first, bias is not None, parts, keep)


def conv2d_maxpool_backward(dy: Any, cache: ConvPoolCache,
                            need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d_maxpool_forward` (run with ``training=True``).

    Each pooled output's gradient goes to the convolution output that was its window's first
    maximum; from there it is the convolution's backward pass, chunk by chunk.

    Returns:
        ``(dx, dkernel, dbias)``; ``dx`` is None unless ``need_dx``, ``dbias`` None without
        a bias.

    Shape:
        dy: (N, H2, W2, F); dx: (N, H, W, C); dkernel: (kh, kw, C, F); dbias: (F,).
    """
    x, kernel, strides, pads, dilation, (ph, pw), (ho, wo), first, has_bias, parts, kept, \
        transformed, _, by_fields = cache
    if first is None:
        raise ValueError("conv2d_maxpool_backward: the forward pass ran with training=False")
    if transformed is not None:
        return _winograd_backward(dy, cache, need_dx)
    if by_fields:
        return window_fields.backward(dy, x, kernel, pads, (ph, pw), parts, first, kept,
                                      has_bias, need_dx)
    if compiled_conv_pool.applies(x, kernel, strides, dilation):
        return compiled_conv_pool.backward(dy, x, kernel, pads, (ph, pw), first, has_bias,
                                           need_dx)
    kh, kw, c, f = kernel.shape
    n, h2, w2, _ = dy.shape
    dy = dy.astype(x.dtype, copy=False)
    dx = conv.InputGrad(kernel, x.shape, strides, pads, dilation, x.dtype) if need_dx else None
    cropped = (h2 * ph, w2 * pw) != (ho, wo)

    def work(part: slice) -> Any:
        dy_flat = dy[part].reshape(-1, f)
        blocks = compiled_pool.window_grads(dy_flat, first[part].reshape(-1, f), ph * pw)
        cols = kept[part.start] if kept is not None else _window_patches(
            _pad(x[part], pads), (kh, kw), strides, dilation, (ph, pw), (h2, w2))
        dz_flat = blocks.reshape(-1, f)
        sums = (cols.T @ dz_flat, backend.column_sums(dy_flat) if has_bias else None)
        if dx is not None:  # the convolution's output gradient, in image order
            count = dy_flat.shape[0] // (h2 * w2)
            dz = (xp.zeros if cropped else xp.empty)((count, ho, wo, f), dtype=dy.dtype)
            for k in range(ph * pw):
                i, j = divmod(k, pw)
                dz[:, i:h2 * ph:ph, j:w2 * pw:pw] = blocks[k].reshape(count, h2, w2, f)
            dx.add(part, dz)
        return sums

    if kept is None:  # chunks sized by what backward gathers
        gathered = kh * kw * (dx.gathered if dx is not None else c)
        parts = conv._chunks(n, ho * wo * gathered * x.itemsize)
    dkernel, dbias = conv.sum_in_order(backend.parallel_map(work, parts), has_bias)
    return (dx.result() if dx is not None else None), dkernel.reshape(kernel.shape), dbias


def _transformed(algorithm: Any, x: Any, pads: Pads, tiles_hw: tuple[int, int],
                 kept: bool) -> Any:
    """``V = B^T d B`` of a chunk's tiles (2 pixels apart). Where compiled, the padding is
    read as zeros (no padded copy) and, unless the array is ``kept`` past the chunk, ``V`` is
    this thread's scratch array (no fresh pages: see :mod:`cnnumpy.functional.fast.scratch`).

    Shape:
        x: (N, H, W, C) -> (16 or 36, N * Ht * Wt, C).
    """
    if not compiled.usable(x):
        return algorithm.input_transform(_pad(x, pads), tiles_hw)
    x = xp.ascontiguousarray(x)
    shape = (algorithm.VALUES, x.shape[0] * tiles_hw[0] * tiles_hw[1], x.shape[3])
    v = xp.empty(shape, dtype=x.dtype) if kept else scratch.array("v", shape, x.dtype)
    (top, _), (left, _) = pads
    if algorithm is winograd:
        compiled_winograd_rows.input_rows(x, top, left, *tiles_hw, v)
    else:  # F(2x2, 5x5): F(4x4, 3x3)'s points, tiles two pixels apart
        compiled_winograd43.input_tiles(x, tiles_hw, v, step=2, origin=(top, left))
    return v


def _winograd_forward(algorithm: Any, x: Any, kernel: Any, bias: Any, pads: Pads,
                      conv_hw: tuple[int, int], y: Any, first: Any) -> ConvPoolCache:
    """:func:`conv2d_maxpool_forward` for 3x3 or 5x5, stride 1, 2x2 pooling, by the
    transforms of ``algorithm`` (:func:`winograd.algorithm`), into ``y`` (and ``first`` when
    training): each chunk's 2x2 output tiles come out of its ``output_transform`` as the
    pooling windows' blocks."""
    f = kernel.shape[3]
    n, tiles_hw = x.shape[0], (conv_hw[0] // 2, conv_hw[1] // 2)
    u = algorithm.kernel_transform(kernel)
    tiles = tiles_hw[0] * tiles_hw[1]
    parts = conv._chunks(n, winograd.image_bytes(algorithm.VALUES, tiles, kernel.shape[2], f,
                                                 x.itemsize))
    v_bytes = algorithm.VALUES * tiles * kernel.shape[2] * x.itemsize  # per image
    keep: dict[int, Any] | None = ({} if first is not None and n * v_bytes <= KEEP_PATCHES_BYTES
                                   else None)

    def work(part: slice) -> None:
        v = _transformed(algorithm, x[part], pads, tiles_hw, kept=keep is not None)
        if keep is not None:
            keep[part.start] = v  # each chunk its own key: safe from several threads
        out = y[part].reshape(-1, f)  # a view: the chunk's rows of y
        m = scratch.array("m", (v.shape[0], v.shape[1], f), v.dtype)
        xp.matmul(v, u, out=m)
        algorithm.output_pool(m, out, None if first is None else first[part].reshape(-1, f))
        if bias is not None:
            out += bias

    backend.parallel_map(work, parts)
    return ConvPoolCache(x, kernel, (1, 1), pads, (1, 1), (2, 2), conv_hw, first,
                         bias is not None, parts, keep, u, algorithm)


def _winograd_backward(dy: Any, cache: ConvPoolCache, need_dx: bool) -> tuple[Any, Any, Any]:
    """:func:`conv2d_maxpool_backward` of :func:`_winograd_forward`, over the forward pass's
    chunks (backward holds the same arrays per image): the window gradients through the
    transforms' adjoints, the kernel's summed over chunks in the transformed domain and
    brought back once."""
    x, kernel, _, pads, _, _, conv_hw, first, has_bias, parts, kept, u, algorithm, _ = cache
    f = kernel.shape[3]
    tiles_hw = (conv_hw[0] // 2, conv_hw[1] // 2)
    dy = dy.astype(x.dtype, copy=False)
    dx = xp.empty(x.shape, dtype=x.dtype) if need_dx else None
    u_t = xp.ascontiguousarray(u.transpose(0, 2, 1))  # (values, F, C)

    def work(part: slice) -> Any:
        dy_flat = dy[part].reshape(-1, f)
        blocks = compiled_pool.window_grads(dy_flat, first[part].reshape(-1, f), 4)
        dm = algorithm.output_transform_adjoint(blocks)
        v = kept[part.start] if kept is not None else _transformed(
            algorithm, x[part], pads, tiles_hw, kept=False)
        sums = (xp.matmul(v.transpose(0, 2, 1), dm),
                backend.column_sums(dy_flat) if has_bias else None)
        if dx is not None:
            algorithm.input_gradient(xp.matmul(dm, u_t), pads, tiles_hw, dx[part])
        return sums

    du, dbias = conv.sum_in_order(backend.parallel_map(work, parts), has_bias)
    return dx, algorithm.kernel_transform_adjoint(du), dbias
