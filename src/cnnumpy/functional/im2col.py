"""Geometry of 2-D convolutions and the im2col/col2im pair, as pure functions (NHWC).

The Chainer ``utils/conv.py`` of this project: output sizes, padding forms, and the strided
view of every receptive field (``im2col``) with its adjoint (``col2im``), which the
convolution kernels in :mod:`cnnumpy.functional.conv` build on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy.backend import xp

Pads = tuple[tuple[int, int], tuple[int, int]]
"""Resolved padding: ``((top, bottom), (left, right))``."""


def _is_int(value: Any, minimum: int) -> bool:
    return bool(isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                and value >= minimum)


def as_pair(value: Any, name: str, where: str) -> tuple[int, int]:
    """Return a positive int or a pair of positive ints as a pair, or raise a ValueError."""
    pair = (value, value) if _is_int(value, 1) else value
    if isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_is_int(v, 1) for v in pair):
        return int(pair[0]), int(pair[1])
    raise ValueError(f"{where}: {name} must be a positive int or a pair of positive ints, "
                     f"received {name}={value!r}")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def normalize_padding(padding: Any, where: str = "padding") -> str | Pads:
    """Return "valid", "same" or ``((top, bottom), (left, right))``, or raise a ValueError."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    if _is_int(padding, 0):
        return ((int(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        pad_h, pad_w = padding
        if _is_int(pad_h, 0) and _is_int(pad_w, 0):
            return (int(pad_h), int(pad_h)), (int(pad_w), int(pad_w))
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(q, 0) for q in p)
               for p in padding):
            return (int(pad_h[0]), int(pad_h[1])), (int(pad_w[0]), int(pad_w[1]))
    raise ValueError(f"{where}: padding must be 'valid', 'same', a non-negative int, a pair "
                     f"(pad_h, pad_w) or ((top, bottom), (left, right)), "
                     f"received padding={padding!r}")


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: Any, in_hw: tuple[int, int], kernel_hw: int | tuple[int, int],
                    strides: int | tuple[int, int] = 1,
                    dilation: int | tuple[int, int] = 1) -> Pads:
    """Turn any accepted padding form into ``((top, bottom), (left, right))``.

    "same" follows TensorFlow/Keras: the output size is ``ceil(in / stride)`` and, when the
    total padding is odd, the extra row (column) goes to the bottom (right).
    """
    mode = normalize_padding(padding)
    if mode == "valid":
        return (0, 0), (0, 0)
    if isinstance(mode, str):  # "same"
        k, s, d = _pair(kernel_hw), _pair(strides), _pair(dilation)
        return _same_pads(in_hw[0], k[0], s[0], d[0]), _same_pads(in_hw[1], k[1], s[1], d[1])
    return mode


def conv_output_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0,
                     pad_after: int = 0, dilation: int = 1) -> int:
    """Output length along one axis; zero or negative when the kernel does not fit."""
    span = (kernel - 1) * dilation + 1
    return (size + pad_before + pad_after - span) // stride + 1


def output_hw(padded_hw: tuple[int, int], kernel_hw: tuple[int, int],
              strides: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """``(Ho, Wo)`` of a convolution of an input already padded to ``padded_hw``, or a
    ValueError when the kernel does not fit."""
    (hp, wp), (kh, kw), (sh, sw), (dh, dw) = padded_hw, kernel_hw, strides, dilation
    ho, wo = conv_output_size(hp, kh, sh, dilation=dh), conv_output_size(wp, kw, sw, dilation=dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"im2col: kernel {(kh, kw)} with dilation {(dh, dw)} does not fit "
                         f"the padded input of size {(hp, wp)}")
    return ho, wo


def _pad(x: Any, pads: Pads, value: float = 0) -> Any:
    """``x`` padded with ``value`` on its spatial axes (``x`` itself when no padding).

    One fill and one copy: ``xp.pad`` gives the same array but spends tens of microseconds
    in Python per call, holding the interpreter lock the kernels' threads share.
    """
    (top, bottom), (left, right) = pads
    if not (top or bottom or left or right):
        return x
    n, h, w, c = x.shape
    out = xp.full((n, h + top + bottom, w + left + right, c), value, dtype=x.dtype)
    out[:, top:top + h, left:left + w] = x
    return out


def im2col(x: Any, kernel_hw: int | tuple[int, int], strides: int | tuple[int, int] = 1,
           padding: Any = "valid", dilation: int | tuple[int, int] = 1) -> Any:
    """Every receptive field of ``x``, as a read-only strided view (no copy beyond padding).

    Shape:
        x: (N, H, W, C); result: (N, Ho, Wo, kh, kw, C).
    """
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel_hw), _pair(strides), _pair(dilation)
    x = _pad(x, resolve_padding(padding, x.shape[1:3], (kh, kw), (sh, sw), (dh, dw)))
    n, hp, wp, c = x.shape
    ho, wo = output_hw((hp, wp), (kh, kw), (sh, sw), (dh, dw))
    s_n, s_h, s_w, s_c = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(n, ho, wo, kh, kw, c),
        strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c), writeable=False)


def col2im(cols: Any, x_shape: tuple[int, ...], strides: int | tuple[int, int] = 1,
           padding: Any = "valid", dilation: int | tuple[int, int] = 1) -> Any:
    """The adjoint of :func:`im2col`: add every receptive field back where it came from.

    Shape:
        cols: (N, Ho, Wo, kh, kw, C); result: x_shape = (N, H, W, C).
    """
    kernel_hw, strides, dilation = cols.shape[3:5], _pair(strides), _pair(dilation)
    pads = resolve_padding(padding, (x_shape[1], x_shape[2]), kernel_hw, strides, dilation)
    return _scatter_taps(lambda i, j: cols[:, :, :, i, j], x_shape, kernel_hw, strides, pads,
                         dilation, cols.dtype)


def _scatter_taps(tap: Callable[[int, int], Any], x_shape: tuple[int, ...],
                  kernel_hw: tuple[int, int], strides: tuple[int, int], pads: Pads,
                  dilation: tuple[int, int], dtype: Any) -> Any:
    """Sum, at the input positions each came from, the (N, Ho, Wo, C) arrays ``tap(i, j)``:
    what every receptive field holds at kernel offset (i, j)."""
    n, h, w, c = x_shape
    (top, bottom), (left, right) = pads
    out = xp.zeros((n, h + top + bottom, w + left + right, c), dtype=dtype)
    _add_taps(out, tap, kernel_hw, strides, dilation)
    return out[:, top:top + h, left:left + w]


def _add_taps(out: Any, tap: Callable[[int, int], Any], kernel_hw: tuple[int, int],
              strides: tuple[int, int], dilation: tuple[int, int]) -> None:
    """Add each ``tap(i, j)`` into the padded input ``out``: one strided ``+=`` per offset."""
    (sh, sw), (dh, dw) = strides, dilation
    for i, j in itertools.product(range(kernel_hw[0]), range(kernel_hw[1])):
        part = tap(i, j)
        ho, wo = part.shape[1:3]
        out[:, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw] += part
