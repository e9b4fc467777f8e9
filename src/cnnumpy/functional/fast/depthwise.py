"""A direct depthwise convolution: one strided slice times a per-channel weight per kernel tap.

In a depthwise convolution (one input channel per group, ``M`` filters per channel) each
output is a sum of ``kh * kw`` products, too few for a matrix product to pay for gathering
the patches. Here, for each kernel tap (i, j), the slice of the padded input that the tap
reads at every output position (``xpad[:, i*dh::sh, j*dw::sw]``, a view) is multiplied by
that tap's weight of each channel and added to the output:

    y[n, oh, ow, c*M + m] = sum_{i, j} xpad[n, oh*sh + i*dh, ow*sw + j*dw, c] * k[i, j, 0, c*M + m]

vectorized over the images, positions and channels, a Python loop over the taps only. The
kernel gradient is, per tap, the sum over images and positions of the slice times ``dy``; the
input gradient adds ``dy`` times the tap's weights back into the slice (summed over ``M``).
The work goes a few images at a time (:data:`CHUNK_BYTES` of output, so that the running sum
stays in cache across the taps) over the library's threads. With one filter per channel and
Numba, :mod:`cnnumpy.functional.fast.compiled_depthwise` computes it instead (3-4x faster).

Must equal: the grouped im2col path of :func:`cnnumpy.functional.conv.conv2d_forward` and
:func:`cnnumpy.functional.conv.conv2d_backward` (set :data:`ENABLED` to False), within float
rounding. Checked by ``tests/functional/fast/test_depthwise.py``
(``test_equals_the_grouped_im2col_path``, ``test_matches_pytorch``) and, through
``DepthwiseConv2D``, ``SeparableConv2D`` and ``Conv2D(groups=C)``, by the PyTorch tests of
``tests/layers``.
"""

from __future__ import annotations

from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled_depthwise, fused
from cnnumpy.functional.im2col import Pads, _pad, im2col, output_hw

ENABLED = True
"""Compute depthwise convolutions (grouped, one input channel per group) this way; False:
by the grouped im2col path of :mod:`cnnumpy.functional.conv_grouped`."""

EINSUM_MIN_CHANNELS = 32
"""From this many channels on, the forward pass and the kernel gradient sum over the taps in
one ``einsum`` of the chunk's receptive fields (a strided view), which measured about twice
as fast as the per-tap passes at 48-96 channels and 1.5x slower at 16."""

CHUNK_BYTES = 2**19
"""Output bytes per chunk of images: the running sum and one tap's product stay in cache."""


def applies(kernel_shape: tuple[int, ...], groups: int) -> bool:
    """Whether a grouped convolution with this kernel goes this way (one channel per group)."""
    return ENABLED and groups > 1 and kernel_shape[2] == 1


def _chunks(n: int, bytes_per_image: int) -> list[slice]:
    """About :data:`CHUNK_BYTES` per chunk, a whole number of chunks per thread."""
    count = -(-n * bytes_per_image // CHUNK_BYTES)
    threads = backend.get_num_threads()
    if threads > 1 and count > 1:
        count = -(-count // threads) * threads
    return backend.batch_slices(n, max(1, min(n, count)))


def _tap(i: int, j: int, strides: tuple[int, int], dilation: tuple[int, int],
         out_hw: tuple[int, int]) -> tuple[slice, ...]:
    """Index of the padded input that kernel tap (i, j) reads at every output position."""
    (sh, sw), (dh, dw), (ho, wo) = strides, dilation, out_hw
    return (slice(None), slice(i * dh, i * dh + (ho - 1) * sh + 1, sh),
            slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))


def forward(x: Any, kernel: Any, bias: Any, strides: tuple[int, int], pads: Pads,
            dilation: tuple[int, int], relu: bool) -> Any:
    """The depthwise convolution of ``x`` (plus the bias, then the ReLU if ``relu``).

    Shape:
        x: (N, H, W, C); kernel: (kh, kw, 1, C * M) -> y: (N, Ho, Wo, C * M).
    """
    kh, kw, _, f = kernel.shape
    n, h, w, c = x.shape
    m = f // c
    (top, bottom), (left, right) = pads
    ho, wo = output_hw((h + top + bottom, w + left + right), (kh, kw), strides, dilation)
    if compiled_depthwise.applies(x, kernel):
        return compiled_depthwise.forward(x, kernel, bias, strides, pads, dilation, relu,
                                          (ho, wo))
    weights = kernel.reshape(kh, kw, c, m)
    y = xp.empty((n, ho, wo, f), dtype=x.dtype)

    def work(part: slice) -> None:
        out = y[part].reshape(-1, ho, wo, c, m)
        if c >= EINSUM_MIN_CHANNELS:
            fields = im2col(_pad(x[part], pads), (kh, kw), strides, "valid", dilation)
            xp.einsum("nhwijc,ijcm->nhwcm", fields, weights, out=out)
            fused.add_bias_relu(y[part], bias, relu)
            return
        xpad = _pad(x[part], pads)[..., None]  # (n, Hp, Wp, C, 1): broadcasts over M
        product = xp.empty_like(out)
        for i in range(kh):
            for j in range(kw):
                tap = xpad[_tap(i, j, strides, dilation, (ho, wo))]
                xp.multiply(tap, weights[i, j], out=out if i == j == 0 else product)
                if i or j:
                    out += product
        fused.add_bias_relu(y[part], bias, relu)

    backend.parallel_map(work, _chunks(n, ho * wo * f * x.itemsize))
    return y


def backward(dy: Any, cache: Any, need_dx: bool) -> tuple[Any, Any, Any]:
    """``(dx, dkernel, dbias)`` of :func:`forward`, from the convolution's cache (which holds
    the input).

    Shape:
        dy: (N, Ho, Wo, C * M); dx: (N, H, W, C); dkernel: (kh, kw, 1, C * M); dbias: (C * M,).
    """
    x, kernel, x_shape, strides, pads, dilation, _, has_bias, relu_output, _ = cache
    kh, kw, _, f = kernel.shape
    n, h, w, c = x_shape
    m = f // c
    (top, _), (left, _) = pads
    if compiled_depthwise.applies(x, kernel):
        return compiled_depthwise.backward(dy, x, kernel, strides, pads, dilation,
                                           relu_output, has_bias, need_dx)
    dy = dy.astype(x.dtype, copy=False)
    ho, wo = dy.shape[1:3]
    weights = kernel.reshape(kh, kw, c, m)
    dx = xp.empty(x_shape, dtype=x.dtype) if need_dx else None

    def work(part: slice) -> Any:
        dy_part = dy[part] if relu_output is None else fused.relu_grad_of_output(
            dy[part], relu_output[part])
        dy5 = dy_part.reshape(-1, ho, wo, c, m)
        xpad = _pad(x[part], pads)
        dxpad = xp.zeros(xpad.shape, dtype=x.dtype) if need_dx else None
        dkernel = xp.empty((kh, kw, c, m), dtype=x.dtype)
        if c >= EINSUM_MIN_CHANNELS:
            fields = im2col(xpad, (kh, kw), strides, "valid", dilation)
            xp.einsum("nhwijc,nhwcm->ijcm", fields, dy5, out=dkernel)
        product = xp.empty(dy5.shape, dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                tap = _tap(i, j, strides, dilation, (ho, wo))
                if c < EINSUM_MIN_CHANNELS:
                    xp.multiply(xpad[tap][..., None], dy5, out=product)
                    dkernel[i, j] = backend.column_sums(product.reshape(-1, f)).reshape(c, m)
                if dxpad is not None:
                    xp.multiply(dy5, weights[i, j], out=product)
                    dxpad[tap] += product[..., 0] if m == 1 else product.sum(axis=-1)
        if dx is not None and dxpad is not None:
            dx[part] = dxpad[:, top:top + h, left:left + w]
        return dkernel, (backend.column_sums(dy_part.reshape(-1, f)) if has_bias else None)

    parts = backend.parallel_map(work, _chunks(n, ho * wo * f * x.itemsize))
    dkernel, dbias = conv.sum_in_order(parts, has_bias)
    return dx, dkernel.reshape(kernel.shape), dbias
