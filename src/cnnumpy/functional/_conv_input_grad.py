"""The input gradient of an ungrouped convolution (:class:`InputGrad`), added a chunk of
images at a time by :func:`cnnumpy.functional.conv.conv2d_backward` and the fast paths.

Its switches (:data:`DX_AS_CONV`, :data:`DX_AS_CONV_MIN_CHANNELS`) live here, where they are
read; :mod:`cnnumpy.functional.conv` re-exports them with the class.
"""

from __future__ import annotations

from typing import Any

from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled_im2col
from cnnumpy.functional.im2col import Pads, _add_taps, _pad

DX_AS_CONV = True
"""Compute a stride-1 input gradient as a convolution of the padded output gradient with the
flipped kernel (one product per chunk) rather than one small product per kernel tap, when
the input has at least :data:`DX_AS_CONV_MIN_CHANNELS` channels."""

DX_AS_CONV_MIN_CHANNELS = 32
"""Below this many input channels the convolution's product is too narrow (its output has
one column per input channel) to beat the per-tap products."""


class InputGrad:
    """The input gradient of an ungrouped convolution, added a chunk of images at a time.

    Where the compiled kernels apply (:func:`cnnumpy.functional.fast.compiled_im2col.
    scatters`: more than ``FEW_CHANNELS`` input channels), each chunk's patch gradients
    ``dy @ kernel^T`` (one product) are added back where the patches came from, straight
    into the chunk's images of ``dx`` (col2im). Otherwise, for stride 1 and at least
    :data:`DX_AS_CONV_MIN_CHANNELS` input channels it is a convolution of ``dy`` (see
    :func:`_pad_for_input_grad`), written straight into each chunk's rows of ``dx``; else
    ``dy @ kernel[i, j].T`` is added back at each kernel offset (i, j) of a padded gradient,
    cropped at the end.
    """

    def __init__(self, kernel: Any, x_shape: tuple[int, ...], strides: tuple[int, int],
                 pads: Pads, dilation: tuple[int, int], dtype: Any) -> None:
        kh, kw, c, f = kernel.shape
        self.kernel_hw, self.strides, self.pads, self.dilation = (kh, kw), strides, pads, dilation
        self.x_shape = x_shape
        self.by_col2im = compiled_im2col.scatters(kernel)
        self.by_conv = (not self.by_col2im and DX_AS_CONV and strides == (1, 1)
                        and c >= DX_AS_CONV_MIN_CHANNELS)
        self.gathered = max(c, f) if self.by_conv else c  # patch values per kernel tap
        if self.by_col2im:
            self.dx = xp.empty(x_shape, dtype=dtype)
            self.kernel_t = xp.ascontiguousarray(kernel.reshape(-1, f).T.astype(dtype))
        elif self.by_conv:
            self.dx = xp.empty(x_shape, dtype=dtype)
            self.flipped = _flipped_kernel(kernel)
        else:
            (top, bottom), (left, right) = pads
            padded = (x_shape[0], x_shape[1] + top + bottom, x_shape[2] + left + right, c)
            self.dxpad = xp.zeros(padded, dtype=dtype)
            self.taps = xp.ascontiguousarray(kernel.transpose(0, 1, 3, 2))  # [i, j]: (F, C)

    def add(self, part: slice, dy_part: Any) -> None:
        """Add the input gradient of images ``part`` from their output gradient ``dy_part``
        (N, Ho, Wo, F). Chunks may run concurrently: each writes only its own images."""
        c = self.x_shape[3]
        if self.by_col2im:
            cols = dy_part.reshape(-1, dy_part.shape[3]) @ self.kernel_t
            dx = self.dx[part]
            dx[...] = 0
            compiled_im2col.add_patches(cols, self.pads, self.kernel_hw, self.strides,
                                        self.dilation, dy_part.shape[1:3], dx)
            return
        if self.by_conv:
            dy_padded = _pad_for_input_grad(dy_part, self.kernel_hw, self.pads, self.dilation)
            from cnnumpy.functional import conv  # it imports this module

            cols = conv._patches(dy_padded, self.kernel_hw, (1, 1), self.dilation)
            xp.matmul(cols, self.flipped, out=self.dx[part].reshape(-1, c))
            return
        dy_flat = dy_part.reshape(-1, dy_part.shape[3])
        shape = (*dy_part.shape[:3], c)
        _add_taps(self.dxpad[part], lambda i, j: (dy_flat @ self.taps[i, j]).reshape(shape),
                  self.kernel_hw, self.strides, self.dilation)

    def result(self) -> Any:
        """The input gradient (N, H, W, C), once every chunk has been added."""
        if self.by_col2im or self.by_conv:
            return self.dx
        (top, _), (left, _) = self.pads
        return self.dxpad[:, top:top + self.x_shape[1], left:left + self.x_shape[2]]


def _pad_for_input_grad(dy: Any, kernel_hw: tuple[int, int], pads: Pads,
                        dilation: tuple[int, int]) -> Any:
    """For stride 1, ``dx`` is the "valid" convolution of ``dy``, padded by ``span - 1 - pad``
    on each side (cropped where that is negative), with :func:`_flipped_kernel`. This pads.

    Shape:
        dy: (N, Ho, Wo, F) -> (N, H + span_h - 1, W + span_w - 1, F).
    """
    spans = ((kernel_hw[0] - 1) * dilation[0], (kernel_hw[1] - 1) * dilation[1])
    widths = [(span - before, span - after)
              for span, (before, after) in zip(spans, pads, strict=True)]
    crop = tuple(slice(max(-b, 0), dy.shape[1 + a] - max(-e, 0))
                 for a, (b, e) in enumerate(widths))
    (top, bottom), (left, right) = ((max(b, 0), max(e, 0)) for b, e in widths)
    return _pad(dy[:, crop[0], crop[1]], ((top, bottom), (left, right)))


def _flipped_kernel(kernel: Any) -> Any:
    """The kernel flipped in both spatial axes with its channel axes swapped, as a matrix.

    Shape:
        kernel: (kh, kw, C, F) -> (kh * kw * F, C).
    """
    return xp.ascontiguousarray(
        kernel[::-1, ::-1].transpose(0, 1, 3, 2).reshape(-1, kernel.shape[2]))
