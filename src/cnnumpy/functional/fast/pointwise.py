"""1x1 convolutions as plain matrix products, with no patches gathered.

A 1x1 convolution with no padding is a matrix product over the channels at every pixel: the
NHWC input, reshaped (no copy) to ``(N * H * W, C)``, times the kernel as ``(C, F)``. Its
kernel gradient is ``x^T dy`` and its input gradient ``dy K^T``. The im2col path gathers the
same values into a patch matrix first (a full copy of the input, forward and backward); here
a stride-1 input is used where it is, and a strided one is sliced first (``x[:, ::sh, ::sw]``,
the only pixels a 1x1 kernel reads); the input gradient of a strided one is written at those
pixels, zeros elsewhere. Dilation does not matter for a 1x1 kernel. Like the im2col path the
work goes a chunk of images at a time over the library's threads, with the bias and ReLU
applied to each chunk while it is in cache. One whole product on two BLAS threads was up to
40 % faster when it ran well but had 10-20x outliers on loaded cores; the per-chunk products
on the library's threads did not (MobileNetV2's shapes at batch 64).

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` and
:func:`cnnumpy.functional.conv.conv2d_backward` by im2col (set :data:`ENABLED` to False),
within float rounding. Checked by ``tests/functional/fast/test_pointwise.py``
(``test_equals_the_im2col_path``, ``test_matches_pytorch``) and, through ``Conv2D`` and
``SeparableConv2D``, by the PyTorch tests of ``tests/layers``.
"""

from __future__ import annotations

from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional import conv
from cnnumpy.functional.fast import fused

ENABLED = True
"""Compute ungrouped 1x1 convolutions without padding this way; False: by im2col."""


def applies(kernel_shape: tuple[int, ...], pads: Any, groups: int) -> bool:
    """Whether a convolution with this kernel, resolved padding and groups goes this way."""
    return (ENABLED and groups == 1 and kernel_shape[:2] == (1, 1)
            and pads == ((0, 0), (0, 0)))


def _strided(x: Any, strides: tuple[int, int]) -> Any:
    """The pixels a 1x1 kernel reads: all of them, or every ``stride``-th (a view)."""
    return x if strides == (1, 1) else x[:, ::strides[0], ::strides[1]]


def forward(x: Any, kernel: Any, bias: Any, strides: tuple[int, int], relu: bool) -> Any:
    """``x @ kernel`` at every (strided) pixel, plus the bias, then the ReLU if ``relu``.

    Shape:
        x: (N, H, W, C); kernel: (1, 1, C, F) -> y: (N, ceil(H / sh), ceil(W / sw), F).
    """
    xs = _strided(x, strides)
    n, ho, wo, c = xs.shape
    f = kernel.shape[3]
    weights = kernel.reshape(c, f)
    y = xp.empty((n, ho, wo, f), dtype=x.dtype)

    def work(part: slice) -> None:
        out = y[part].reshape(-1, f)  # a view: the chunk's rows of y
        xp.matmul(xs[part].reshape(-1, c), weights, out=out)
        fused.add_bias_relu(out, bias, relu)

    backend.parallel_map(work, conv._chunks(n, ho * wo * c * x.itemsize))
    return y


def backward(dy: Any, cache: Any, need_dx: bool) -> tuple[Any, Any, Any]:
    """``(dx, dkernel, dbias)`` of :func:`forward`, from the convolution's cache (which holds
    the input).

    Shape:
        dy: (N, Ho, Wo, F); dx: (N, H, W, C); dkernel: (1, 1, C, F); dbias: (F,).
    """
    x, kernel, x_shape, strides, _, _, _, has_bias, relu_output, _ = cache
    c, f = kernel.shape[2], kernel.shape[3]
    dy = dy.astype(x.dtype, copy=False)
    xs = _strided(x, strides)
    weights_t = xp.ascontiguousarray(kernel.reshape(c, f).T)
    dx = None
    if need_dx:
        dx = (xp.empty if strides == (1, 1) else xp.zeros)(x_shape, dtype=x.dtype)
    dxs = _strided(dx, strides) if need_dx else None

    def work(part: slice) -> Any:
        dy_part = dy[part] if relu_output is None else fused.relu_grad_of_output(
            dy[part], relu_output[part])
        dy_flat = dy_part.reshape(-1, f)
        if dxs is not None:
            if strides == (1, 1):
                xp.matmul(dy_flat, weights_t, out=dxs[part].reshape(-1, c))
            else:
                dxs[part] = (dy_flat @ weights_t).reshape(*dy_part.shape[:3], c)
        return (xs[part].reshape(-1, c).T @ dy_flat,
                backend.column_sums(dy_flat) if has_bias else None)

    n, ho, wo, _ = dy.shape
    parts = backend.parallel_map(work, conv._chunks(n, ho * wo * max(c, f) * x.itemsize))
    dkernel, dbias = conv.sum_in_order(parts, has_bias)
    return dx, dkernel.reshape(kernel.shape), dbias
