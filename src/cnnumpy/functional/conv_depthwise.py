"""Depthwise and depthwise-separable 2-D convolutions (NHWC), as pure functions.

A depthwise convolution is a grouped convolution with one input channel per group; its
Keras-layout kernel ``(kh, kw, C, M)`` (``M`` the depth multiplier) holds the same numbers,
in the same memory order, as :func:`cnnumpy.functional.conv.conv2d_forward`'s grouped kernel
``(kh, kw, 1, C * M)``: output channel ``c * M + m`` is input channel ``c`` convolved with
``kernel[:, :, c, m]``. These functions reshape (no copy) and call the grouped convolution.

A separable convolution is a depthwise convolution (no bias) followed by a 1x1 ungrouped
convolution (the pointwise kernel, then the bias), as in Keras' ``SeparableConv2D``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cnnumpy.functional.conv import ConvCache, conv2d_backward, conv2d_forward


def _grouped(kernel: Any) -> Any:
    """(kh, kw, C, M) -> (kh, kw, 1, C * M), a view."""
    kh, kw, c, m = kernel.shape
    return kernel.reshape(kh, kw, 1, c * m)


def depthwise_conv2d_forward(x: Any, kernel: Any, bias: Any = None,
                             strides: int | tuple[int, int] = 1, padding: Any = "valid",
                             dilation: int | tuple[int, int] = 1,
                             relu: bool = False) -> tuple[Any, ConvCache]:
    """Depthwise 2-D cross-correlation: each input channel with its own ``M`` kernels.

    Args:
        x: input images.
        kernel: one ``(kh, kw)`` kernel per input channel and multiplier.
        bias: (C * M,) or None.
        strides, padding, dilation, relu: as :func:`~cnnumpy.functional.conv.conv2d_forward`.

    Returns:
        ``(y, cache)``; pass ``cache`` to :func:`depthwise_conv2d_backward`.

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, C, M); y: (N, Ho, Wo, C * M).
    """
    if kernel.ndim != 4 or x.ndim != 4 or x.shape[3] != kernel.shape[2]:
        raise ValueError(f"depthwise_conv2d_forward: input {x.shape} and kernel "
                         f"{kernel.shape} do not match (expected (N, H, W, C) and "
                         f"(kh, kw, C, depth_multiplier))")
    return conv2d_forward(x, _grouped(kernel), bias, strides, padding, dilation,
                          groups=kernel.shape[2], relu=relu)


def depthwise_conv2d_backward(dy: Any, cache: ConvCache,
                              need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Gradients of :func:`depthwise_conv2d_forward`: ``(dx, dkernel, dbias)``.

    Shape:
        dy: (N, Ho, Wo, C * M); dx: (N, H, W, C); dkernel: (kh, kw, C, M); dbias: (C * M,).
    """
    dx, dkernel, dbias = conv2d_backward(dy, cache, need_dx)
    kh, kw, _, f = dkernel.shape
    channels = cache.groups
    return dx, dkernel.reshape(kh, kw, channels, f // channels), dbias


class SeparableCache(NamedTuple):
    """The depthwise and pointwise convolutions' caches."""

    depthwise: ConvCache
    pointwise: ConvCache


def separable_conv2d_forward(x: Any, depthwise_kernel: Any, pointwise_kernel: Any,
                             bias: Any = None, strides: int | tuple[int, int] = 1,
                             padding: Any = "valid", dilation: int | tuple[int, int] = 1,
                             relu: bool = False) -> tuple[Any, SeparableCache]:
    """A depthwise convolution (strides, padding and dilation apply to it) followed by a 1x1
    convolution with ``pointwise_kernel`` and ``bias``.

    Shape:
        x: (N, H, W, C); depthwise_kernel: (kh, kw, C, M); pointwise_kernel: (1, 1, C * M, F);
        y: (N, Ho, Wo, F).
    """
    if pointwise_kernel.ndim != 4 or pointwise_kernel.shape[:2] != (1, 1) \
            or pointwise_kernel.shape[2] != depthwise_kernel.shape[2] * depthwise_kernel.shape[3]:
        raise ValueError(f"separable_conv2d_forward: pointwise kernel {pointwise_kernel.shape} "
                         f"does not match the depthwise kernel {depthwise_kernel.shape} "
                         f"(expected (1, 1, C * depth_multiplier, filters))")
    mid, depthwise = depthwise_conv2d_forward(x, depthwise_kernel, None, strides, padding,
                                              dilation)
    y, pointwise = conv2d_forward(mid, pointwise_kernel, bias, relu=relu)
    return y, SeparableCache(depthwise, pointwise)


def separable_conv2d_backward(dy: Any, cache: SeparableCache,
                              need_dx: bool = True) -> tuple[Any, Any, Any, Any]:
    """Gradients of :func:`separable_conv2d_forward`:
    ``(dx, ddepthwise_kernel, dpointwise_kernel, dbias)``."""
    dmid, dpointwise, dbias = conv2d_backward(dy, cache.pointwise)
    dx, ddepthwise, _ = depthwise_conv2d_backward(dmid, cache.depthwise, need_dx)
    return dx, ddepthwise, dpointwise, dbias
