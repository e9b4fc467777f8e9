"""2-D convolution on channels-last (NHWC) images, as pure functions.

The forward pass is a cross-correlation, as in every framework (the kernel is not flipped):

    y[n, oh, ow, f] = bias[f] + sum_{i, j, c} xpad[n, oh*sh + i*dh, ow*sw + j*dw, c] * k[i, j, c, f]

Kernels are ``(kh, kw, C // groups, filters)``. An ungrouped convolution works through the batch
a few images at a time, on the library's threads (:func:`cnnumpy.backend.parallel_map`): it
pads a chunk, gathers its receptive fields into one small matrix (``im2col``: a strided view,
then one contiguous copy of a few MiB) and multiplies it by the kernel while the matrix is in
cache (about twice as fast as one patch matrix for the whole batch). Where Numba runs, a
compiled kernel writes the patch matrix straight from the unpadded chunk instead
(:mod:`cnnumpy.functional.fast.compiled_im2col`). Backward keeps only a reference to the
input and gathers each chunk again; per-chunk kernel gradients are summed in chunk order.
The input gradient is :class:`InputGrad`
(:mod:`cnnumpy.functional._conv_input_grad`). A convolution followed by max pooling
is in :mod:`cnnumpy.functional.fast.conv_pool`; a 1x1 convolution is a plain matrix product
(:mod:`cnnumpy.functional.fast.pointwise`); a 3x3 stride-1 one from 16 channels goes by
Winograd's F(2x2, 3x3) (:mod:`cnnumpy.functional.fast.winograd_conv`).

Grouped and depthwise convolutions are in :mod:`cnnumpy.functional.conv_grouped`; a depthwise
one is computed directly, tap by tap (:mod:`cnnumpy.functional.fast.depthwise`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional._conv_input_grad import (  # noqa: F401 (re-exported)
    DX_AS_CONV,
    DX_AS_CONV_MIN_CHANNELS,
    InputGrad,
)
from cnnumpy.functional.conv_grouped import (
    conv_grouped,
    grouped_input_grad,
    grouped_kernel_grad,
)
from cnnumpy.functional.fast import compiled_im2col, fused
from cnnumpy.functional.im2col import (  # noqa: F401 (some are re-exported for callers)
    Pads,
    _add_taps,
    _pad,
    _pair,
    _scatter_taps,
    as_pair,
    col2im,
    conv_output_size,
    im2col,
    normalize_padding,
    output_hw,
    resolve_padding,
)

__all__ = [  # with the geometry re-exported from im2col
    "CHUNK_BYTES", "DX_AS_CONV", "DX_AS_CONV_MIN_CHANNELS", "FEW_CHANNELS", "ConvCache",
    "InputGrad", "Pads", "as_pair", "col2im", "conv2d_backward", "conv2d_forward",
    "conv_output_size", "im2col", "normalize_padding", "output_hw", "patch_matrix",
    "resolve_padding", "sum_in_order"]

CHUNK_BYTES = 4 * 2**20
"""Target size of one chunk's patch matrix: small enough to stay in cache while multiplied."""

COMPILED_CHUNK_BYTES = 1 * 2**20
"""The same, where :mod:`cnnumpy.functional.fast.compiled_im2col` gathers the patches (no
padded copy per chunk, so smaller chunks cost less): half a core's L2 cache."""

SPLIT_MIN_BYTES = 2**18
"""A batch of one chunk's patches, from this many bytes on, is cut into one chunk per thread
(training at batch 32: LeNet-like 1.15x, CIFAR-like 1.06x; the prototype's model 1.6x at 64)."""

FEW_CHANNELS = 3
"""Up to this many input channels, patches are gathered offset-major (see :func:`_patches`).
Three covers RGB: a CIFAR-like first convolution measured 5-15 % faster that way."""


def _patches(xpad: Any, kernel_hw: tuple[int, int], strides: tuple[int, int],
             dilation: tuple[int, int]) -> Any:
    """The receptive fields of a chunk of padded images as a matrix (a copy).

    Shape:
        xpad: (N, Hp, Wp, C) -> (N * Ho * Wo, kh * kw * C).
    """
    view = im2col(xpad, kernel_hw, strides, "valid", dilation)  # (N, Ho, Wo, kh, kw, C)
    return patch_matrix(view, (0, 1, 2))


def _gather(x: Any, pads: Pads, kernel_hw: tuple[int, int], strides: tuple[int, int],
            dilation: tuple[int, int]) -> Any:
    """The receptive fields of a chunk of images padded by ``pads``, as :func:`_patches` of
    the padded chunk: gathered in one pass, without the padded copy, where
    :mod:`cnnumpy.functional.fast.compiled_im2col` applies.

    Shape:
        x: (N, H, W, C) -> (N * Ho * Wo, kh * kw * C).
    """
    if compiled_im2col.applies(x):
        (top, bottom), (left, right) = pads
        padded_hw = (x.shape[1] + top + bottom, x.shape[2] + left + right)
        out_hw = output_hw(padded_hw, kernel_hw, strides, dilation)
        return compiled_im2col.patches(x, pads, kernel_hw, strides, dilation, out_hw)
    return _patches(_pad(x, pads), kernel_hw, strides, dilation)


def patch_matrix(view: Any, row_axes: tuple[int, ...]) -> Any:
    """Copy a view of patches, whose last three axes are ``(kh, kw, C)``, into a matrix with
    one row per patch, rows in the order of ``row_axes`` (all the other axes).

    With few channels the copy is made offset-major, ``(kh * kw * C, rows)``, and the
    transposed view returned: it then runs along image rows instead of in runs of ``C``
    values, about five times faster for ``C = 1``. Matrix products take either layout.

    Shape:
        view: (..., kh, kw, C) -> (rows, kh * kw * C).
    """
    taps = tuple(range(view.ndim - 3, view.ndim))
    k = view.shape[-3] * view.shape[-2] * view.shape[-1]
    if view.shape[-1] <= FEW_CHANNELS:
        return xp.ascontiguousarray(view.transpose(*taps, *row_axes)).reshape(k, -1).T
    return xp.ascontiguousarray(view.transpose(*row_axes, *taps)).reshape(-1, k)


def _chunks(n: int, bytes_per_image: int, target: int | None = None) -> list[slice]:
    """Split a batch of ``n`` images into balanced chunks of about ``target`` (default
    :data:`CHUNK_BYTES`) of patches, a whole number of them per thread (one chunk for a
    batch under :data:`SPLIT_MIN_BYTES`: not worth the threads)."""
    target = CHUNK_BYTES if target is None else target
    count = -(-n // max(1, target // max(bytes_per_image, 1)))
    threads = backend.get_num_threads()
    if threads > 1 and (count > 1 or n * bytes_per_image >= SPLIT_MIN_BYTES):
        count = min(n, -(-count // threads) * threads)
    return backend.batch_slices(n, count)


def _conv_chunked(x: Any, kernel: Any, bias: Any, strides: tuple[int, int], pads: Pads,
                  dilation: tuple[int, int], relu: bool) -> Any:
    """Ungrouped convolution, a chunk of images at a time, each chunk padded on its own (the
    chunks spread over the library's threads); with ``relu``, each chunk's ReLU too."""
    kh, kw, c, f = kernel.shape
    n = x.shape[0]
    (top, bottom), (left, right) = pads
    padded_hw = (x.shape[1] + top + bottom, x.shape[2] + left + right)
    ho, wo = output_hw(padded_hw, (kh, kw), strides, dilation)  # raises if it does not fit
    flat_kernel = kernel.reshape(-1, f)
    y = xp.empty((n, ho, wo, f), dtype=x.dtype)

    def work(part: slice) -> None:
        cols = _gather(x[part], pads, (kh, kw), strides, dilation)
        out = y[part].reshape(-1, f)  # a view: the chunk's rows of y
        xp.matmul(cols, flat_kernel, out=out)
        fused.add_bias_relu(out, bias, relu)

    backend.parallel_map(work, _chunks(n, ho * wo * kh * kw * c * x.itemsize, _target(x)))
    return y


def _target(x: Any) -> int:
    """The chunk size for patches of ``x``."""
    return COMPILED_CHUNK_BYTES if compiled_im2col.applies(x) else CHUNK_BYTES


class ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass: the input when ungrouped
    (chunks are padded and gathered again), the patches when grouped; with a ReLU applied,
    the output (its positive entries pass the gradient)."""

    saved: Any
    kernel: Any
    x_shape: tuple[int, ...]
    strides: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]
    groups: int
    has_bias: bool
    relu_output: Any = None
    transformed_kernel: Any = None  # Winograd's U = G g G^T, which the backward pass reuses


def conv2d_forward(x: Any, kernel: Any, bias: Any = None, strides: int | tuple[int, int] = 1,
                   padding: Any = "valid", dilation: int | tuple[int, int] = 1,
                   groups: int = 1, relu: bool = False) -> tuple[Any, ConvCache]:
    """2-D cross-correlation of a batch of images with a bank of kernels, optionally with a
    ReLU applied to the result (chunk by chunk, while it is in cache).

    Args:
        x: input images.
        kernel: weights; input channels ``C`` must equal ``groups * Cg``, ``F`` a multiple of
            ``groups``.
        bias: (F,) or None.
        strides, dilation: int or (vertical, horizontal).
        padding: any form accepted by :func:`resolve_padding`.
        groups: number of channel groups, each convolved with its own ``F // groups`` filters.
        relu: return ``max(y, 0)``; the backward pass then takes the gradient of that.

    Returns:
        ``(y, cache)``; pass ``cache`` to :func:`conv2d_backward`.

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, Cg, F); y: (N, Ho, Wo, F).
    """
    kh, kw, cg, f = kernel.shape
    transformed = None
    if x.ndim != 4 or x.shape[3] != cg * groups or f % groups:
        raise ValueError(f"conv2d_forward: input {x.shape} and kernel {kernel.shape} do not "
                         f"match for groups={groups}")
    strides, dilation = _pair(strides), _pair(dilation)
    pads = resolve_padding(padding, x.shape[1:3], (kh, kw), strides, dilation)
    dtype = xp.result_type(x, kernel)
    x, kernel = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    from cnnumpy.functional.fast import depthwise, pointwise, winograd_conv  # they import this

    if pointwise.applies(kernel.shape, pads, groups):  # 1x1: a matrix product, no gathering
        saved = x
        y = pointwise.forward(x, kernel, bias, strides, relu)
    elif winograd_conv.applies(kernel.shape, strides, dilation, groups):
        saved = x
        y, transformed = winograd_conv.forward(x, kernel, bias, pads, relu)
    elif groups == 1:
        saved = x
        y = _conv_chunked(x, kernel, bias, strides, pads, dilation, relu)
    elif depthwise.applies(kernel.shape, groups):  # a slice times a weight per kernel tap
        saved = x
        y = depthwise.forward(x, kernel, bias, strides, pads, dilation, relu)
    else:
        y, saved = conv_grouped(x, kernel, strides, pads, dilation, groups)
        if bias is not None:
            y += bias
        if relu:
            xp.maximum(y, 0, out=y)
    return y, ConvCache(saved, kernel, x.shape, strides, pads, dilation, groups,
                        bias is not None, y if relu else None, transformed)


def conv2d_backward(dy: Any, cache: ConvCache, need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d_forward` given the output gradient ``dy``.

    Args:
        dy: the gradient of the loss with respect to the output (after the ReLU, if any).
        cache: from :func:`conv2d_forward`.
        need_dx: False skips the input gradient (the first layer's is never used).

    Returns:
        ``(dx, dkernel, dbias)``; ``dx`` is None when not needed, ``dbias`` is None when the
        forward pass had no bias.

    Shape:
        dy: (N, Ho, Wo, F); dx: (N, H, W, C); dkernel: (kh, kw, Cg, F); dbias: (F,).
    """
    saved, kernel, x_shape, strides, pads, dilation, groups, has_bias, relu_output, u = cache
    kh, kw, cg, f = kernel.shape
    from cnnumpy.functional.fast import depthwise, pointwise, winograd_conv  # they import this

    if pointwise.applies(kernel.shape, pads, groups):
        return pointwise.backward(dy, cache, need_dx)
    if winograd_conv.applies(kernel.shape, strides, dilation, groups):
        return winograd_conv.backward(dy, saved, kernel, pads, has_bias, relu_output, need_dx, u)
    if groups == 1:
        return _backward_chunked(dy, cache, need_dx)
    if saved.ndim == 4:  # the input, not patches: the forward pass was depthwise's
        return depthwise.backward(dy, cache, need_dx)
    if relu_output is not None:
        dy = dy * (relu_output > 0)
    dbias = backend.column_sums(dy.reshape(-1, f)) if has_bias else None
    dkernel = grouped_kernel_grad(dy, saved, kernel.shape, groups)
    dx = grouped_input_grad(dy, kernel, x_shape, strides, pads, dilation, groups) \
        if need_dx else None
    return dx, dkernel, dbias


def _backward_chunked(dy: Any, cache: ConvCache, need_dx: bool) -> tuple[Any, Any, Any]:
    """Input, kernel and bias gradients of an ungrouped convolution, a chunk of images at a
    time (spread over the library's threads): each chunk's patches are gathered again for
    ``cols.T @ dy``, and :class:`InputGrad` adds the chunk's input gradient. Per-chunk kernel
    and bias gradients are summed in chunk order. A ReLU's gradient is applied to each chunk
    of ``dy`` as it is used."""
    x, kernel, x_shape, strides, pads, dilation, _, has_bias, relu_output, _ = cache
    kh, kw, c, f = kernel.shape
    dy = dy.astype(x.dtype, copy=False)
    dx = InputGrad(kernel, x_shape, strides, pads, dilation, x.dtype) if need_dx else None

    def work(part: slice) -> Any:
        cols = _gather(x[part], pads, (kh, kw), strides, dilation)
        dy_part = dy[part] if relu_output is None else fused.relu_grad_of_output(
            dy[part], relu_output[part])
        dy_flat = dy_part.reshape(-1, f)
        sums = (cols.T @ dy_flat, backend.column_sums(dy_flat) if has_bias else None)
        if dx is not None:
            dx.add(part, dy_part)
        return sums

    n, ho, wo, _ = dy.shape
    gathered = kh * kw * (dx.gathered if dx is not None else c)  # per output position
    parts = backend.parallel_map(work, _chunks(n, ho * wo * gathered * x.itemsize, _target(x)))
    dkernel, dbias = sum_in_order(parts, has_bias)
    return (dx.result() if dx is not None else None), dkernel.reshape(kernel.shape), dbias


def sum_in_order(parts: list[tuple[Any, Any]], has_bias: bool) -> tuple[Any, Any]:
    """Per-chunk ``(dkernel, dbias)`` summed in chunk order, whatever the threads did."""
    dkernel, dbias = parts[0]
    for dk, db in parts[1:]:
        dkernel += dk
        if has_bias:
            dbias += db
    return dkernel, dbias
