"""Grouped and depthwise 2-D convolutions (NHWC), the parts :mod:`cnnumpy.functional.conv`
hands to them when ``groups > 1``.

A grouped convolution moves the groups to the batch axis, gathers all patches at once and
uses one batched product over the groups; a depthwise one (one input channel per group) has
too few terms per output for a matrix product to pay off and sums over the kernel taps of the
strided view (``einsum``). The input gradient adds ``dy @ kernel[i, j].T`` (per group) back
at each kernel offset.
"""

from __future__ import annotations

from typing import Any

from cnnumpy.backend import xp
from cnnumpy.functional.im2col import Pads, _scatter_taps, im2col


# Grouped convolutions move the groups to the batch axis, (N, H, W, G * Cg) -> (G * N, H, W, Cg),
# so that each group's patches are gathered as contiguously as an ungrouped convolution's.
def _group_images(x: Any, groups: int) -> Any:
    """(N, H, W, G * Cg) -> (G * N, H, W, Cg)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, groups, c // groups).transpose(3, 0, 1, 2, 4)
    return x.reshape(groups * n, h, w, c // groups)


def _ungroup_images(x: Any, groups: int) -> Any:
    """(G * N, H, W, Cg) -> (N, H, W, G * Cg): the inverse of :func:`_group_images`."""
    gn, h, w, cg = x.shape
    x = x.reshape(groups, gn // groups, h, w, cg).transpose(1, 2, 3, 0, 4)
    return x.reshape(gn // groups, h, w, groups * cg)


def _group_kernel(kernel: Any, groups: int) -> Any:
    """(kh, kw, Cg, G * Fg) -> (G, kh * kw * Cg, Fg)."""
    kh, kw, cg, f = kernel.shape
    k = kernel.reshape(kh, kw, cg, groups, f // groups).transpose(3, 0, 1, 2, 4)
    return k.reshape(groups, kh * kw * cg, f // groups)


def _ungroup_kernel(grouped: Any, kernel_shape: tuple[int, ...]) -> Any:
    """(G, kh * kw * Cg, Fg) -> (kh, kw, Cg, G * Fg): the inverse of :func:`_group_kernel`."""
    kh, kw, cg, f = kernel_shape
    groups = grouped.shape[0]
    k = grouped.reshape(groups, kh, kw, cg, f // groups).transpose(1, 2, 3, 0, 4)
    return k.reshape(kernel_shape)


def conv_grouped(x: Any, kernel: Any, strides: tuple[int, int], pads: Pads,
                  dilation: tuple[int, int], groups: int) -> tuple[Any, Any]:
    """Grouped convolution without bias; returns the output and the patches backward needs.

    The patches are a (G, N*Ho*Wo, kh*kw*Cg) matrix, or for a depthwise convolution (one input
    channel per group) the (N, Ho, Wo, kh, kw, C) view of the padded input, which a direct sum
    over the kernel taps (einsum) uses with no copy.
    """
    kh, kw, cg, f = kernel.shape
    n = x.shape[0]
    if cg == 1:
        patches = im2col(x, (kh, kw), strides, pads, dilation)
        ho, wo = patches.shape[1:3]
        multiplier_kernel = kernel.reshape(kh, kw, groups, f // groups)
        y = xp.einsum("nhwijc,ijcf->nhwcf", patches, multiplier_kernel)
        return y.reshape(n, ho, wo, f), patches
    patches = im2col(_group_images(x, groups), (kh, kw), strides, pads, dilation)
    ho, wo = patches.shape[1:3]
    cols = patches.reshape(groups, n * ho * wo, kh * kw * cg)  # the one copy of the patches
    y = cols @ _group_kernel(kernel, groups)  # (G, N*Ho*Wo, Fg)
    return _ungroup_images(y.reshape(groups * n, ho, wo, f // groups), groups), cols


def grouped_kernel_grad(dy: Any, saved: Any, kernel_shape: tuple[int, ...],
                        groups: int) -> Any:
    """The kernel gradient of a grouped convolution from the patches :func:`conv_grouped`
    returned.

    Shape:
        dy: (N, Ho, Wo, F) -> (kh, kw, Cg, F).
    """
    f = kernel_shape[3]
    if kernel_shape[2] == 1:
        dy_split = dy.reshape(*dy.shape[:3], groups, f // groups)
        return xp.einsum("nhwijc,nhwcf->ijcf", saved, dy_split).reshape(kernel_shape)
    dy_grouped = _group_images(dy, groups).reshape(groups, -1, f // groups)
    return _ungroup_kernel(saved.transpose(0, 2, 1) @ dy_grouped, kernel_shape)


def grouped_input_grad(dy: Any, kernel: Any, x_shape: tuple[int, ...],
                        strides: tuple[int, int], pads: Pads, dilation: tuple[int, int],
                        groups: int) -> Any:
    """The input gradient of a grouped convolution, one kernel offset at a time: the patches'
    gradient at offset (i, j) is ``dy @ kernel[i, j].T`` per group, added straight back."""
    kh, kw, cg, f = kernel.shape
    n, ho, wo, _ = dy.shape
    if cg == 1:
        dy_split = dy.reshape(n, ho, wo, groups, f // groups)
        per_channel = kernel.reshape(kh, kw, groups, f // groups)

        def tap(i: int, j: int) -> Any:
            return xp.einsum("nhwcf,cf->nhwc", dy_split, per_channel[i, j])
    else:
        dy_grouped = _group_images(dy, groups).reshape(groups, -1, f // groups)
        per_group = kernel.reshape(kh, kw, cg, groups, f // groups).transpose(0, 1, 3, 4, 2)

        def tap(i: int, j: int) -> Any:
            part = (dy_grouped @ per_group[i, j]).reshape(groups * n, ho, wo, cg)
            return _ungroup_images(part, groups)
    return _scatter_taps(tap, x_shape, (kh, kw), strides, pads, dilation, dy.dtype)
