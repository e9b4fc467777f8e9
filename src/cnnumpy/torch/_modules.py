"""PyTorch modules for what no ``torch.nn`` module does exactly as cnnumpy: average pooling
over uneven "same" padding, Keras' ReLU, and Reshape of channels-last samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class AvgPool2dSame(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (not followed)
    """Average pooling over zero-padded NCHW images that divides by the number of real
    elements in each window, with any (also asymmetric) padding.

    ``nn.AvgPool2d(count_include_pad=False)`` does the same, but only with equal padding on
    both sides of an axis; cnnumpy's "same" puts the odd extra element at the bottom/right.

    Args:
        kernel_size: (kh, kw).
        stride: (sh, sw).
        pads: (left, right, top, bottom), as for ``torch.nn.functional.pad``.
    """

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int],
                 pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.pads = tuple(kernel_size), tuple(stride), tuple(pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        pooled = [F.avg_pool2d(F.pad(a, self.pads), self.kernel_size, self.stride)
                  for a in (x, ones)]
        return pooled[0] / pooled[1]  # (sum / window) / (real count / window)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, pads={self.pads}"


class KerasReLU(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (not followed)
    """Keras' ReLU: ``min(x, max_value)`` above ``threshold``, ``negative_slope * (x -
    threshold)`` elsewhere (see :class:`cnnumpy.layers.ReLU`)."""

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        above = x if self.max_value is None else torch.clamp(x, max=self.max_value)
        return torch.where(x > self.threshold, above, self.negative_slope * (x - self.threshold))

    def extra_repr(self) -> str:
        return (f"max_value={self.max_value}, negative_slope={self.negative_slope}, "
                f"threshold={self.threshold}")


class ReshapeNHWC(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (not followed)
    """cnnumpy's Reshape (row-major over channels-last samples) between NCHW tensors.

    Args:
        hwc: the (H, W, C) image whose elements the incoming tensor holds channels-first (an
            NCHW image, or its ``nn.Flatten``), or None when it is in cnnumpy's order.
        target_shape: the per-sample output shape; a 3-D one is returned as NCHW.
    """

    def __init__(self, hwc: tuple[int, int, int] | None, target_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.hwc, self.target_shape = hwc, tuple(target_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.hwc is not None:
            h, w, c = self.hwc
            x = x.reshape(n, c, h, w).permute(0, 2, 3, 1)
        x = x.reshape(n, *self.target_shape)
        return x.permute(0, 3, 1, 2) if len(self.target_shape) == 3 else x

    def extra_repr(self) -> str:
        return f"hwc={self.hwc}, target_shape={self.target_shape}"
