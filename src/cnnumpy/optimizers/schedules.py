"""Learning-rate schedules: callables ``schedule(step) -> float``.

An optimizer evaluates its schedule at the number of updates already taken, so the first
update uses ``schedule(0)``: the same as a PyTorch scheduler stepped after every update.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy.optimizers.base import check_float, check_int


def _check_step(where: str, step: Any) -> int:
    return check_int(where, "step", step, "a non-negative int", lambda v: v >= 0)


class LearningRateSchedule:
    """Base class: a callable of the step count with a config round trip."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def get_config(self) -> dict[str, Any]:
        """The schedule's constructor arguments, JSON-ready."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        """The schedule that ``get_config`` describes (``cls(**config)``)."""
        return cls(**config)


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * gamma ** (step // step_size)``, as PyTorch's ``StepLR``.

    Args:
        initial_learning_rate: the rate of the first ``step_size`` steps, > 0.
        step_size: steps between two decays, a positive int.
        gamma: the factor applied at each decay, > 0.
    """

    def __init__(self, initial_learning_rate: float, step_size: int,
                 gamma: float = 0.1) -> None:
        self.initial_learning_rate = check_float(
            "StepDecay", "initial_learning_rate", initial_learning_rate, "a float > 0",
            lambda v: v > 0)
        self.step_size = check_int("StepDecay", "step_size", step_size, "a positive int",
                                   lambda v: v > 0)
        self.gamma = check_float("StepDecay", "gamma", gamma, "a float > 0", lambda v: v > 0)

    def __call__(self, step: int) -> float:
        step = _check_step("StepDecay", step)
        return self.initial_learning_rate * self.gamma ** (step // self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, as in Keras.

    With ``decay_steps=1`` this is ``torch.optim.lr_scheduler.ExponentialLR(gamma=decay_rate)``.

    Args:
        initial_learning_rate: the rate at step 0, > 0.
        decay_steps: steps over which the rate is multiplied by ``decay_rate``, > 0.
        decay_rate: > 0.
        staircase: if True, decay in discrete jumps (``step // decay_steps``).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False) -> None:
        where = "ExponentialDecay"
        self.initial_learning_rate = check_float(
            where, "initial_learning_rate", initial_learning_rate, "a float > 0",
            lambda v: v > 0)
        self.decay_steps = check_float(where, "decay_steps", decay_steps, "a number > 0",
                                       lambda v: v > 0)
        self.decay_rate = check_float(where, "decay_rate", decay_rate, "a float > 0",
                                      lambda v: v > 0)
        if not isinstance(staircase, (bool, np.bool_)):
            raise TypeError(f"{where}: staircase must be True or False, received "
                            f"staircase={staircase!r}")
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        exponent = _check_step("ExponentialDecay", step) / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate**exponent

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    """Cosine decay with an optional linear warmup, as Keras' ``CosineDecay``.

    Without warmup: ``lr * ((1 - alpha) * 0.5 * (1 + cos(pi * t / decay_steps)) + alpha)`` with
    ``t = min(step, decay_steps)``: ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=
    decay_steps, eta_min=alpha * lr)`` up to ``decay_steps``, then constant. With warmup, the
    rate rises linearly from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps`` steps, then decays from ``warmup_target`` over ``decay_steps`` steps.

    Args:
        initial_learning_rate: the rate at step 0, > 0.
        decay_steps: length of the cosine decay, a positive int.
        alpha: the final rate as a fraction of the decay's starting rate, in [0, 1].
        warmup_steps: length of the warmup, a non-negative int (needs ``warmup_target``).
        warmup_target: the rate reached at the end of the warmup, > 0, or None for no warmup.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_steps: int = 0, warmup_target: float | None = None) -> None:
        where = "CosineDecay"
        self.initial_learning_rate = check_float(
            where, "initial_learning_rate", initial_learning_rate, "a float > 0",
            lambda v: v > 0)
        self.decay_steps = check_int(where, "decay_steps", decay_steps, "a positive int",
                                     lambda v: v > 0)
        self.alpha = check_float(where, "alpha", alpha, "in [0, 1]", lambda v: 0 <= v <= 1)
        self.warmup_steps = check_int(where, "warmup_steps", warmup_steps,
                                      "a non-negative int", lambda v: v >= 0)
        if warmup_target is not None:
            warmup_target = check_float(where, "warmup_target", warmup_target,
                                        "None or a float > 0", lambda v: v > 0)
        elif self.warmup_steps:
            raise ValueError(f"{where}: warmup_steps={warmup_steps!r} needs a warmup_target "
                             "(the rate to reach), received warmup_target=None")
        self.warmup_target = warmup_target

    def __call__(self, step: int) -> float:
        step = _check_step("CosineDecay", step)
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            delta = self.warmup_target - self.initial_learning_rate
            return self.initial_learning_rate + delta * fraction
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def _decay(self, step: int, start: float) -> float:
        fraction = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * fraction))
        return start * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_steps": self.warmup_steps, "warmup_target": self.warmup_target}


SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)
}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": schedule.get_config()}``."""
    name = type(schedule).__name__
    if SCHEDULES.get(name) is not type(schedule):
        raise TypeError(f"serialize: can only serialize the schedules {sorted(SCHEDULES)}, "
                        f"received {schedule!r}")
    return {"class_name": name, "config": schedule.get_config()}


def deserialize(data: dict[str, Any]) -> LearningRateSchedule:
    """Rebuild a schedule from :func:`serialize`'s dict."""
    if not isinstance(data, dict) or data.get("class_name") not in SCHEDULES \
            or not isinstance(data.get("config"), dict):
        raise ValueError(f"deserialize: expected {{'class_name': one of {sorted(SCHEDULES)}, "
                         f"'config': {{...}}}}, received {data!r}")
    return SCHEDULES[data["class_name"]].from_config(data["config"])
