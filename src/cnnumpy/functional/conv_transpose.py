"""Transposed 2-D convolution (NHWC), as pure functions.

A transposed convolution is the input gradient of a convolution: with a kernel
``(kh, kw, F, C)`` (Keras' layout), the convolution maps ``(N, Ho, Wo, F)`` images to
``(N, H, W, C)`` and its transpose maps ``(N, H, W, C)`` back to ``(N, Ho, Wo, F)``:

    y[n, oh*sh + i*dh - top, ow*sw + j*dw - left, f] += x[n, oh, ow, c] * k[i, j, f, c]

(plus the bias), kept where the index falls inside ``(Ho, Wo)``. The forward pass is
therefore :class:`cnnumpy.functional.conv.InputGrad`, and the backward pass the convolution
itself (input gradient) and its kernel gradient. ``top`` and ``left`` come from
:func:`transpose_geometry`, which follows Keras for "valid", "same" and ``output_padding``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional.conv import (
    ConvCache,
    InputGrad,
    Pads,
    _chunks,
    conv2d_backward,
    conv2d_forward,
)
from cnnumpy.functional.im2col import _pair


def transpose_geometry(size: int, kernel: int, stride: int = 1, dilation: int = 1,
                       padding: str = "valid",
                       output_padding: int | None = None) -> tuple[int, tuple[int, int]]:
    """Output length along one axis and the padding ``(before, after)`` of the convolution
    whose transpose this is; the output length is zero or negative when nothing fits.

    The lengths are Keras' (``span = (kernel - 1) * dilation + 1``):

    * "valid": ``size * stride + max(span - stride, 0)``, or with ``output_padding``
      ``(size - 1) * stride + span + output_padding``;
    * "same": ``size * stride``, or with ``output_padding``
      ``(size - 1) * stride + span % 2 + output_padding``.

    The output starts ``before`` positions into the full transposed output (0 for "valid";
    for "same" half the rows cut, the odd one at the end, as TensorFlow and JAX do).
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        before = 0
        out = (size * stride + max(span - stride, 0) if output_padding is None
               else (size - 1) * stride + span + output_padding)
    elif output_padding is None:
        out = size * stride
        before = max(span - stride, 0) // 2
    else:
        out = (size - 1) * stride + span % 2 + output_padding
        before = max(span - span % 2 - output_padding, 0) // 2
    full = (size - 1) * stride + span  # every position a kernel tap reaches
    return out, (before, max(full - out - before, 0))


class TransposeCache(NamedTuple):
    """What :func:`conv_transpose2d_backward` needs from the forward pass."""

    x: Any
    kernel: Any
    strides: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]
    has_bias: bool


def conv_transpose2d_forward(x: Any, kernel: Any, bias: Any = None,
                             strides: int | tuple[int, int] = 1, padding: str = "valid",
                             output_padding: int | tuple[int, int] | None = None,
                             dilation: int | tuple[int, int] = 1
                             ) -> tuple[Any, TransposeCache]:
    """Transposed 2-D convolution (the input gradient of a convolution), a chunk of images
    at a time on the library's threads.

    Args:
        x: input images.
        kernel: weights in Keras' layout: output channels ``F`` before input channels ``C``.
        bias: (F,) or None.
        strides, dilation: int or (vertical, horizontal).
        padding: "valid" or "same"; with ``output_padding`` (int, pair or None), the output
            size of :func:`transpose_geometry`.

    Returns:
        ``(y, cache)``; pass ``cache`` to :func:`conv_transpose2d_backward`.

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, F, C); y: (N, Ho, Wo, F).
    """
    kh, kw, f, c = kernel.shape
    if x.ndim != 4 or x.shape[3] != c:
        raise ValueError(f"conv_transpose2d_forward: input {x.shape} and kernel {kernel.shape} "
                         f"do not match (expected (N, H, W, C) and (kh, kw, F, C))")
    strides, dilation = _pair(strides), _pair(dilation)
    extra = (None, None) if output_padding is None else _pair(output_padding)
    (out_h, pads_h), (out_w, pads_w) = (
        transpose_geometry(x.shape[1 + a], kernel.shape[a], strides[a], dilation[a], padding,
                           extra[a]) for a in (0, 1))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv_transpose2d_forward: input {x.shape} gives an empty output "
                         f"{(out_h, out_w)}")
    dtype = xp.result_type(x, kernel)
    x, kernel = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    n = x.shape[0]
    pads = (pads_h, pads_w)
    grad = InputGrad(kernel, (n, out_h, out_w, f), strides, pads, dilation, dtype)
    backend.parallel_map(lambda part: grad.add(part, x[part]),
                         _chunks(n, x.shape[1] * x.shape[2] * kh * kw * grad.gathered
                                 * x.itemsize))
    y = xp.ascontiguousarray(grad.result())
    if bias is not None:
        y += bias
    return y, TransposeCache(x, kernel, strides, pads, dilation, bias is not None)


def conv_transpose2d_backward(dy: Any, cache: TransposeCache,
                              need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv_transpose2d_forward`: ``(dx, dkernel, dbias)``; the input
    gradient is the convolution of ``dy`` (None when not needed), the kernel gradient that
    convolution's kernel gradient with ``x`` as its output gradient.

    Shape:
        dy: (N, Ho, Wo, F); dx: (N, H, W, C); dkernel: (kh, kw, F, C); dbias: (F,).
    """
    x, kernel, strides, pads, dilation, has_bias = cache
    dy = dy.astype(x.dtype, copy=False)
    if need_dx:
        dx, conv_cache = conv2d_forward(dy, kernel, None, strides, pads, dilation)
    else:
        dx, conv_cache = None, ConvCache(dy, kernel, dy.shape, strides, pads, dilation, 1,
                                         False)
    _, dkernel, _ = conv2d_backward(x, conv_cache, need_dx=False)
    dbias = backend.column_sums(dy.reshape(-1, dy.shape[3])) if has_bias else None
    return dx, dkernel, dbias
