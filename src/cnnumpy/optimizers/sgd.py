"""Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 weight decay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnumpy import backend
from cnnumpy.optimizers import packing
from cnnumpy.optimizers.base import Optimizer, check_float


def sgd_update(params: list[Any], grads: list[Any], momentum_buffers: list[Any], *,
               lr: float, momentum: float, nesterov: bool, weight_decay: float) -> None:
    """One SGD step, PyTorch's arithmetic (dampening 0); params and buffers change in place.

    With ``g = grad + weight_decay * param`` and ``buf = momentum * buf + g`` (a buffer that
    starts at zero, so it equals the first gradient after the first step), the update is
    ``param -= lr * g`` without momentum, ``lr * buf`` with it and ``lr * (g + momentum * buf)``
    with Nesterov momentum. ``momentum_buffers`` may be empty when ``momentum`` is 0.
    """
    def run(group: list[tuple[Any, ...]]) -> None:
        for p, g, *buf in group:  # buf: [the momentum buffer] or []
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                buf[0] *= momentum
                buf[0] += g
                g = g + momentum * buf[0] if nesterov else buf[0]
            p -= lr * g

    # Every operation is elementwise: pieces on the library's threads, same results.
    slots = [params, grads, momentum_buffers] if momentum else [params, grads]
    backend.parallel_map(run, packing.elementwise_groups(list(zip(*slots, strict=True))))


class SGD(Optimizer):
    """Stochastic gradient descent (``torch.optim.SGD`` with dampening 0).

    Args:
        learning_rate: a positive float or a schedule (a callable of the step count).
        momentum: momentum factor, >= 0.
        nesterov: use Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 penalty added to the gradient, >= 0.
        clipnorm: clip each gradient to this L2 norm.
        global_clipnorm: clip all gradients together to this L2 norm.
    """

    elementwise = True

    def __init__(self, learning_rate: float | Callable[[int], float] = 0.01,
                 momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0, *,
                 clipnorm: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm)
        self.momentum = check_float("SGD", "momentum", momentum, "a float >= 0",
                                    lambda v: v >= 0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"SGD: nesterov must be True or False, received nesterov={nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError(f"SGD: nesterov=True needs momentum > 0, received "
                             f"momentum={momentum!r}")
        self.nesterov = nesterov
        self.weight_decay = check_float("SGD", "weight_decay", weight_decay, "a float >= 0",
                                        lambda v: v >= 0)

    def _slot_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, params: list[Any], grads: list[Any], lr: float) -> None:
        buffers = self._slots("momentum_buffer") if self.momentum else []
        sgd_update(params, grads, buffers, lr=lr, momentum=self.momentum,
                   nesterov=self.nesterov, weight_decay=self.weight_decay)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}
