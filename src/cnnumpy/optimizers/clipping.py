"""Gradient clipping by norm, per gradient or over all of them, as PyTorch's
``torch.nn.utils.clip_grad_norm_`` computes it."""

from __future__ import annotations

import math
from typing import Any

from cnnumpy.backend import xp

CLIP_EPS = 1e-6
"""Added to the norm when clipping, as ``torch.nn.utils.clip_grad_norm_`` does."""


def _scaled(g: Any, norm: Any, max_norm: float) -> Any:
    coef = max_norm / (float(norm) + CLIP_EPS)
    return g * coef if coef < 1.0 else g


def clip_by_norm(grads: list[Any], max_norm: float) -> list[Any]:
    """Scale each gradient separately so that its L2 norm is at most ``max_norm``.

    The scale is ``max_norm / (norm + 1e-6)`` where that is below 1 (as
    ``torch.nn.utils.clip_grad_norm_([g], max_norm)``); new arrays, inputs unchanged.
    """
    return [_scaled(g, xp.sqrt(xp.sum(g * g)), max_norm) for g in grads]


def clip_by_global_norm(grads: list[Any], max_norm: float) -> list[Any]:
    """Scale all gradients by one factor so that their joint L2 norm is at most ``max_norm``.

    Same arithmetic as ``torch.nn.utils.clip_grad_norm_(params, max_norm)``.
    """
    total = math.sqrt(sum(float(xp.sum(g * g)) for g in grads))
    return [_scaled(g, total, max_norm) for g in grads]
