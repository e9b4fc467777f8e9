"""Adam (L2 weight decay in the gradient) and AdamW (decoupled weight decay)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled_adam
from cnnumpy.optimizers import packing
from cnnumpy.optimizers.base import Optimizer, check_float


def adam_update(params: list[Any], grads: list[Any], exp_avgs: list[Any],
                exp_avg_sqs: list[Any], *, step: int, lr: float, beta1: float, beta2: float,
                eps: float, weight_decay: float, decoupled: bool,
                max_exp_avg_sqs: list[Any] | None = None) -> None:
    """One Adam step, PyTorch's arithmetic; params and moments change in place.

    ``step`` counts from 1. Weight decay is either L2 (``g += weight_decay * param``) or,
    with ``decoupled=True`` (AdamW), ``param *= 1 - lr * weight_decay`` before the step. Then
    ``m = beta1*m + (1-beta1)*g``, ``v = beta2*v + (1-beta2)*g*g`` and
    ``param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)``.
    With ``max_exp_avg_sqs`` (AMSGrad) the running maximum of ``v`` replaces ``v``.
    """
    if not params:
        return
    step_size = lr / (1 - beta1**step)
    bias2_sqrt = math.sqrt(1 - beta2**step)
    mode, decay = compiled_adam.NO_DECAY, 0.0
    if weight_decay:
        mode, decay = ((compiled_adam.DECOUPLED, 1 - lr * weight_decay) if decoupled
                       else (compiled_adam.L2, weight_decay))

    def run(group: list[tuple[Any, ...]]) -> None:
        # one scratch array for the group's temporaries, so that a step allocates once
        scratch = None
        for p, g, m, v, *vmax in group:  # vmax: [AMSGrad's running maximum] or []
            if not vmax and compiled_adam.applies(p, g, m, v):  # the same bits, one pass
                compiled_adam.update(p, g, m, v, mode=mode, decay=decay, beta1=beta1,
                                     beta2=beta2, bias2_sqrt=bias2_sqrt, eps=eps,
                                     step_size=step_size)
                continue
            if scratch is None:
                scratch = xp.empty(max(q.size for q, *_ in group), dtype=xp.result_type(*params))
            if weight_decay:
                if decoupled:
                    p *= 1 - lr * weight_decay
                else:
                    g = g + weight_decay * p
            tmp = scratch[:p.size].reshape(p.shape)
            if tmp.dtype != p.dtype:
                tmp = xp.empty_like(p)
            xp.subtract(g, m, out=tmp)
            tmp *= 1 - beta1
            m += tmp  # m += (1 - beta1) * (g - m)
            xp.multiply(g, g, out=tmp)
            tmp *= 1 - beta2
            v *= beta2
            v += tmp  # v = beta2 * v + (1 - beta2) * g * g
            if vmax:
                v = xp.maximum(vmax[0], v, out=vmax[0])
            xp.sqrt(v, out=tmp)
            tmp /= bias2_sqrt
            tmp += eps
            xp.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp  # p -= step_size * m / (sqrt(v) / bias2_sqrt + eps)

    # Every operation is elementwise: pieces of the parameters on the library's threads give
    # the same results as whole parameters on one.
    slots = [params, grads, exp_avgs, exp_avg_sqs]
    if max_exp_avg_sqs is not None:
        slots.append(max_exp_avg_sqs)
    tensors = list(zip(*slots, strict=True))
    backend.parallel_map(run, packing.elementwise_groups(tensors))


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``); ``weight_decay`` is an L2 penalty added to the gradient.

    Args:
        learning_rate: a positive float or a schedule (a callable of the step count).
        beta_1: decay of the first-moment estimate, in [0, 1).
        beta_2: decay of the second-moment estimate, in [0, 1).
        epsilon: added to the denominator, >= 0 (Keras' default 1e-7; PyTorch uses 1e-8).
        weight_decay: >= 0.
        amsgrad: use the running maximum of the second moment (AMSGrad).
        clipnorm: clip each gradient to this L2 norm.
        global_clipnorm: clip all gradients together to this L2 norm.
    """

    decoupled = False
    elementwise = True

    def __init__(self, learning_rate: float | Callable[[int], float] = 0.001,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 clipnorm: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm)
        where = type(self).__name__
        self.beta_1 = check_float(where, "beta_1", beta_1, "in [0, 1)", lambda v: 0 <= v < 1)
        self.beta_2 = check_float(where, "beta_2", beta_2, "in [0, 1)", lambda v: 0 <= v < 1)
        self.epsilon = check_float(where, "epsilon", epsilon, "a float >= 0", lambda v: v >= 0)
        self.weight_decay = check_float(where, "weight_decay", weight_decay, "a float >= 0",
                                        lambda v: v >= 0)
        if not isinstance(amsgrad, bool):
            raise TypeError(f"{where}: amsgrad must be True or False, received "
                            f"amsgrad={amsgrad!r}")
        self.amsgrad = amsgrad

    def _slot_names(self) -> tuple[str, ...]:
        names = ("exp_avg", "exp_avg_sq")
        return (*names, "max_exp_avg_sq") if self.amsgrad else names

    def _update(self, params: list[Any], grads: list[Any], lr: float) -> None:
        adam_update(params, grads, self._slots("exp_avg"), self._slots("exp_avg_sq"),
                    step=self.iterations + 1, lr=lr, beta1=self.beta_1, beta2=self.beta_2,
                    eps=self.epsilon, weight_decay=self.weight_decay, decoupled=self.decoupled,
                    max_exp_avg_sqs=self._slots("max_exp_avg_sq") if self.amsgrad else None)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): ``param *= 1 - lr * wd``.

    Same arguments as :class:`Adam`; ``weight_decay`` defaults to 0.004 (as in Keras).
    """

    decoupled = True

    def __init__(self, learning_rate: float | Callable[[int], float] = 0.001,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 weight_decay: float = 0.004, amsgrad: bool = False, *,
                 clipnorm: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, amsgrad,
                         clipnorm=clipnorm, global_clipnorm=global_clipnorm)
