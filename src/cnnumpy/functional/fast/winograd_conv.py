"""A plain 3x3 stride-1 convolution by Winograd's F(4x4, 3x3) (or F(2x2, 3x3): :data:`TILE`),
forward and backward (NHWC).

The transforms are :mod:`cnnumpy.functional.fast.winograd43`'s (F(2x2, 3x3):
:mod:`cnnumpy.functional.fast.winograd`'s, which the convolution followed by 2x2 max pooling
uses): per chunk of images, the input tiles' ``V = B^T d B``, 36 (16) matrix products
``M = V @ U`` over the channels (``U = G g G^T``, the kernel's), and ``A^T M A`` written
straight into the output (:mod:`cnnumpy.functional.fast.compiled_winograd43`,
:mod:`cnnumpy.functional.fast.compiled_winograd_plain`; the last tiles cropped where the
output size is not a multiple of the tile's). Backward gathers each chunk's ``V``
again (the forward pass keeps only the input, as im2col's does), brings the output gradient
into the transformed domain (``dM = A dY A^T``), and sums ``V^T dM`` over chunks for the
kernel gradient; the input gradient is ``B (dM U^T) B^T`` added back where each tile came
from.

That is 4x (2.25x) fewer multiplications than im2col's product, and no patch matrix 9x the
input: ResNet-20's 16-channel stage, where im2col's narrow products and gathering dominate,
is where it pays most.

Must equal: :func:`cnnumpy.functional.conv.conv2d_forward` and
:func:`cnnumpy.functional.conv.conv2d_backward` by im2col (3x3, stride 1, no dilation,
ungrouped) within float rounding. Checked by ``tests/functional/fast/test_winograd_conv.py``
(``test_equals_im2col_forward_and_backward``, ``test_matches_the_naive_convolution``, for
both tile sizes).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional import conv
from cnnumpy.functional.fast import (
    compiled,
    compiled_winograd43,
    compiled_winograd_plain,
    fused,
    scratch,
    winograd,
    winograd43,
)
from cnnumpy.functional.im2col import Pads, _pad, output_hw

ENABLED = True
"""Compute plain 3x3 stride-1 convolutions of :data:`MIN_CHANNELS` or more input channels
this way; False: by im2col."""

MIN_CHANNELS = 16
"""Below this many input channels (and filters) the transforms cost more than the products
they save."""

TILE = 4
"""Outputs per tile along each axis: 4, F(4x4, 3x3); 2, F(2x2, 3x3)."""

CHUNK_BYTES = 2 * 2**20
"""Target size of one chunk's transformed input and product (both stay in cache)."""


def applies(kernel_shape: tuple[int, ...], strides: tuple[int, int],
            dilation: tuple[int, int], groups: int) -> bool:
    """Whether :func:`forward` computes this convolution: 3x3, stride 1, no dilation,
    ungrouped, at least :data:`MIN_CHANNELS` channels in and out (and :data:`ENABLED`)."""
    kh, kw, c, f = kernel_shape
    return (ENABLED and (kh, kw) == (3, 3) and tuple(strides) == (1, 1)
            and tuple(dilation) == (1, 1) and groups == 1 and min(c, f) >= MIN_CHANNELS)


def _geometry(x_shape: tuple[int, ...], pads: Pads) -> tuple[tuple[int, int], tuple[int, int],
                                                              Pads]:
    """The output size ``(Ho, Wo)`` (a ValueError if the kernel does not fit), its tiles
    ``(Ht, Wt)`` of :data:`TILE` outputs a side and the padding that gives every tile its
    whole input: ``pads`` plus zero rows (columns) up to a multiple of the tile."""
    (top, bottom), (left, right) = pads
    ho, wo = output_hw((x_shape[1] + top + bottom, x_shape[2] + left + right), (3, 3), (1, 1),
                       (1, 1))
    ht, wt = -(-ho // TILE), -(-wo // TILE)
    return (ho, wo), (ht, wt), ((top, bottom + TILE * ht - ho), (left, right + TILE * wt - wo))


def _algorithm() -> ModuleType:
    """The transforms' module for :data:`TILE`."""
    return winograd43 if TILE == 4 else winograd


def _parts(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...],
           tiles_hw: tuple[int, int], itemsize: int) -> list[slice]:
    per_image = winograd.image_bytes(_algorithm().VALUES, tiles_hw[0] * tiles_hw[1],
                                      kernel_shape[2], kernel_shape[3], itemsize)
    return conv._chunks(x_shape[0], per_image, CHUNK_BYTES)


def _input(x: Any, full_pads: Pads, tiles_hw: tuple[int, int]) -> Any:
    """``V``: the transformed input tiles of a chunk (a scratch array where compiled).

    Shape:
        x: (N, H, W, C) -> (36 or 16, N * Ht * Wt, C).
    """
    if TILE == 2 and not compiled.usable(x):
        return winograd.input_transform(_pad(x, full_pads), tiles_hw)
    (top, bottom), (left, right) = full_pads
    n, h, w, c = x.shape
    if TILE == 4 and compiled.usable(x):  # the padding read as zeros: no padded copy
        v = scratch.array("v", (winograd43.VALUES, n * tiles_hw[0] * tiles_hw[1], c), x.dtype)
        compiled_winograd43.input_tiles(x, tiles_hw, v, origin=(top, left))
        return v
    xpad = scratch.array("xpad", (n, h + top + bottom, w + left + right, c), x.dtype)
    xpad[:, :top], xpad[:, top + h:], xpad[:, :, :left], xpad[:, :, left + w:] = 0, 0, 0, 0
    xpad[:, top:top + h, left:left + w] = x
    v = scratch.array("v", (_algorithm().VALUES, n * tiles_hw[0] * tiles_hw[1], c), x.dtype)
    if TILE == 4:
        winograd43.input_tiles(xpad, tiles_hw, v)
    else:
        compiled_winograd_plain.input_tiles(xpad, tiles_hw, v)
    return v


def _write_output(m: Any, y: Any, bias: Any | None, relu: bool) -> None:
    """``A^T M A`` of each tile into its place in ``y`` (cropped at the edges), plus
    ``bias`` (if given), then a ReLU (if ``relu``)."""
    if TILE == 4:  # the bias and ReLU in the same pass
        winograd43.output_tiles(m, y, bias, relu)
        return
    _write_tiles2(m, y)
    if bias is not None or relu:
        fused.add_bias_relu(y.reshape(-1, y.shape[-1]), bias, relu)


def _write_tiles2(m: Any, y: Any) -> None:
    """F(2x2, 3x3)'s ``A^T M A`` of each tile into its place in ``y``."""
    if compiled.usable(m, y) and y.flags.c_contiguous:
        compiled_winograd_plain.output_tiles(m, y)
        return
    n, ho, wo, f = y.shape
    ht, wt = (ho + 1) // 2, (wo + 1) // 2
    tiles = winograd.output_transform(m).reshape(2, 2, n, ht, wt, f)
    for i in range(2):
        for j in range(2):
            y[:, i::2, j::2] = tiles[i, j, :, :(ho - i + 1) // 2, :(wo - j + 1) // 2]


def _output_adjoint(dy: Any) -> Any:
    """The transformed-domain gradient ``A dY A^T`` of every tile (zeros past the edges)."""
    if TILE == 4:
        n, ho, wo, f = dy.shape
        tiles = n * -(-ho // TILE) * -(-wo // TILE)
        dm = scratch.array("dm", (winograd43.VALUES, tiles, f), dy.dtype)
        winograd43.output_tiles_adjoint(dy, dm)
        return dm
    if compiled.usable(dy):
        return compiled_winograd_plain.output_tiles_adjoint(dy)
    n, ho, wo, f = dy.shape
    ht, wt = (ho + 1) // 2, (wo + 1) // 2
    tiles = xp.zeros((2, 2, n, ht, wt, f), dtype=dy.dtype)
    for i in range(2):
        for j in range(2):
            tiles[i, j, :, :(ho - i + 1) // 2, :(wo - j + 1) // 2] = dy[:, i::2, j::2]
    return winograd.output_transform_adjoint(tiles.reshape(4, -1, f))


def forward(x: Any, kernel: Any, bias: Any, pads: Pads, relu: bool) -> tuple[Any, Any]:
    """The convolution (plus ``bias``, then a ReLU if ``relu``), as
    :func:`cnnumpy.functional.conv.conv2d_forward` computes it, and the transformed kernel
    ``U`` (for :func:`backward`).

    Shape:
        x: (N, H, W, C); kernel: (3, 3, C, F); y: (N, Ho, Wo, F); U: (36 or 16, C, F).
    """
    f = kernel.shape[3]
    out_hw, tiles_hw, full_pads = _geometry(x.shape, pads)
    y = xp.empty((x.shape[0], *out_hw, f), dtype=x.dtype)
    u = _algorithm().kernel_transform(kernel)

    def work(part: slice) -> None:
        v = _input(x[part], full_pads, tiles_hw)
        m = scratch.array("m", (v.shape[0], v.shape[1], f), v.dtype)
        xp.matmul(v, u, out=m)
        _write_output(m, y[part], bias, relu)

    backend.parallel_map(work, _parts(x.shape, kernel.shape, tiles_hw, x.itemsize))
    return y, u


def backward(dy: Any, x: Any, kernel: Any, pads: Pads, has_bias: bool, relu_output: Any,
             need_dx: bool, u: Any) -> tuple[Any, Any, Any]:
    """``(dx, dkernel, dbias)`` of :func:`forward` (``relu_output``: its output when it
    applied a ReLU, else None; ``u``: the transformed kernel it returned); ``dx`` None unless
    ``need_dx``, ``dbias`` None without a bias.

    Shape:
        dy: (N, Ho, Wo, F); dx: (N, H, W, C); dkernel: (3, 3, C, F); dbias: (F,).
    """
    f = kernel.shape[3]
    _, tiles_hw, full_pads = _geometry(x.shape, pads)
    dy = dy.astype(x.dtype, copy=False)
    dx = xp.empty(x.shape, dtype=x.dtype) if need_dx else None
    algorithm = _algorithm()
    u_t = xp.ascontiguousarray(u.transpose(0, 2, 1))  # a transposed view: 1.5-2x slower

    def work(part: slice) -> Any:
        dy_part = dy[part] if relu_output is None else fused.relu_grad_of_output(
            dy[part], relu_output[part])
        dm = _output_adjoint(dy_part)
        v = _input(x[part], full_pads, tiles_hw)
        sums = (xp.matmul(v.transpose(0, 2, 1), dm),
                backend.column_sums(dy_part.reshape(-1, f)) if has_bias else None)
        if dx is not None:
            algorithm.input_gradient(xp.matmul(dm, u_t), full_pads, tiles_hw, dx[part])
        return sums

    du, dbias = conv.sum_in_order(
        backend.parallel_map(work, _parts(x.shape, kernel.shape, tiles_hw, x.itemsize)),
        has_bias)
    return dx, algorithm.kernel_transform_adjoint(du), dbias
