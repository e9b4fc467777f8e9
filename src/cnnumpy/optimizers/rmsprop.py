"""RMSprop, optionally centered and with momentum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnumpy.backend import xp
from cnnumpy.optimizers.base import Optimizer, check_float


def rmsprop_update(params: list[Any], grads: list[Any], square_avgs: list[Any],
                   grad_avgs: list[Any] | None, momentum_buffers: list[Any] | None, *,
                   lr: float, alpha: float, eps: float, weight_decay: float,
                   momentum: float) -> None:
    """One RMSprop step, PyTorch's arithmetic; params and slots change in place.

    With ``g = grad + weight_decay * param``: ``s = alpha*s + (1-alpha)*g*g``; the denominator
    is ``sqrt(s) + eps``, or ``sqrt(s - a*a) + eps`` when centered (``grad_avgs`` given, with
    ``a = alpha*a + (1-alpha)*g``). Then ``param -= lr * g / denom``, or with momentum
    (``momentum_buffers`` given) ``buf = momentum*buf + g / denom`` and ``param -= lr * buf``.
    """
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if weight_decay:
            g = g + weight_decay * p
        s = square_avgs[i]
        s *= alpha
        s += (1 - alpha) * g * g
        if grad_avgs is not None:
            a = grad_avgs[i]
            a += (1 - alpha) * (g - a)
            # s >= a*a in exact arithmetic; the maximum keeps rounding from making it negative
            denom = xp.sqrt(xp.maximum(s - a * a, 0)) + eps
        else:
            denom = xp.sqrt(s) + eps
        if momentum_buffers is not None:
            buf = momentum_buffers[i]
            buf *= momentum
            buf += g / denom
            p -= lr * buf
        else:
            p -= lr * g / denom


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop`` with ``alpha=rho``).

    Args:
        learning_rate: a positive float or a schedule (a callable of the step count).
        rho: decay of the running average of squared gradients, in [0, 1).
        momentum: momentum factor, >= 0.
        epsilon: added to the denominator, >= 0 (Keras' default 1e-7; PyTorch uses 1e-8).
        centered: normalize by an estimate of the gradient's variance instead of its
            second moment.
        weight_decay: L2 penalty added to the gradient, >= 0.
        clipnorm: clip each gradient to this L2 norm.
        global_clipnorm: clip all gradients together to this L2 norm.
    """

    elementwise = True

    def __init__(self, learning_rate: float | Callable[[int], float] = 0.001,
                 rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False, weight_decay: float = 0.0, *,
                 clipnorm: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm)
        self.rho = check_float("RMSprop", "rho", rho, "in [0, 1)", lambda v: 0 <= v < 1)
        self.momentum = check_float("RMSprop", "momentum", momentum, "a float >= 0",
                                    lambda v: v >= 0)
        self.epsilon = check_float("RMSprop", "epsilon", epsilon, "a float >= 0",
                                   lambda v: v >= 0)
        if not isinstance(centered, bool):
            raise TypeError(f"RMSprop: centered must be True or False, received "
                            f"centered={centered!r}")
        self.centered = centered
        self.weight_decay = check_float("RMSprop", "weight_decay", weight_decay,
                                        "a float >= 0", lambda v: v >= 0)

    def _slot_names(self) -> tuple[str, ...]:
        names = ["square_avg"]
        if self.momentum:
            names.append("momentum_buffer")
        if self.centered:
            names.append("grad_avg")
        return tuple(names)

    def _update(self, params: list[Any], grads: list[Any], lr: float) -> None:
        rmsprop_update(params, grads, self._slots("square_avg"),
                       self._slots("grad_avg") if self.centered else None,
                       self._slots("momentum_buffer") if self.momentum else None,
                       lr=lr, alpha=self.rho, eps=self.epsilon,
                       weight_decay=self.weight_decay, momentum=self.momentum)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered,
                "weight_decay": self.weight_decay}
