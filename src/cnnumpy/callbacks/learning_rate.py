"""Callbacks that change the learning rate: ReduceLROnPlateau, LearningRateScheduler."""

from __future__ import annotations

import math
from collections.abc import Callable

from cnnumpy.callbacks.base import Callback, _count, _float_learning_rate, _Monitor, _number


class ReduceLROnPlateau(Callback):
    """Multiply a float learning rate by ``factor`` when the monitored quantity stalls.

    After ``max(patience, 1)`` epochs in a row without an improvement of more than ``min_delta``,
    ``lr = max(lr * factor, min_lr)``; then ``cooldown`` epochs pass before counting again.

    Args:
        monitor: key of the epoch logs to watch.
        factor: the multiplier, in (0, 1).
        patience: epochs without improvement before a reduction (an int >= 0).
        min_delta: smallest change that counts as an improvement (a float >= 0).
        min_lr: the learning rate is never reduced below this (a float >= 0).
        mode: "min", "max", or "auto" ("max" when the name contains "acc", else "min").
        cooldown: epochs to wait after a reduction before resuming normal operation.

    Raises:
        TypeError: at the start of training, if the optimizer's learning rate is a schedule.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, min_lr: float = 0.0, mode: str = "auto",
                 cooldown: int = 0) -> None:
        super().__init__()
        where = "ReduceLROnPlateau"
        self._monitor = _Monitor(where, monitor, mode, min_delta)
        self.factor = _number(where, "factor", factor, "a float in (0, 1)", lambda v: 0 < v < 1)
        self.patience = _count(where, "patience", patience)
        self.min_lr = _number(where, "min_lr", min_lr, "a finite float >= 0",
                              lambda v: math.isfinite(v) and v >= 0)
        self.cooldown = _count(where, "cooldown", cooldown)
        self.monitor, self.mode, self.min_delta = monitor, mode, self._monitor.min_delta

    def on_train_begin(self, logs: dict | None = None) -> None:
        _float_learning_rate("ReduceLROnPlateau", self.model)
        self.wait, self.cooldown_left = 0, 0
        self.best = self._monitor.worst

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = self._monitor.value(epoch, logs)
        improved = self._monitor.improved(current, self.best)
        if improved:
            self.best, self.wait = current, 0
        if self.cooldown_left > 0:  # epochs in cooldown do not count as bad
            self.cooldown_left -= 1
            return
        if improved:
            return
        self.wait += 1
        lr = _float_learning_rate("ReduceLROnPlateau", self.model)
        if self.wait >= max(self.patience, 1) and lr > self.min_lr:
            self.model.optimizer.learning_rate = max(lr * self.factor, self.min_lr)
            self.wait, self.cooldown_left = 0, self.cooldown


class LearningRateScheduler(Callback):
    """Set a float learning rate before each epoch: ``lr = fn(epoch, lr)`` (epoch from 0).

    Args:
        fn: a callable of ``(epoch, current_lr)`` returning the new learning rate (> 0).

    Raises:
        TypeError: at the start of training, if the optimizer's learning rate is a schedule.
        ValueError: if ``fn`` returns something other than a finite float > 0.
    """

    def __init__(self, fn: Callable[[int, float], float]) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"LearningRateScheduler: fn must be a callable fn(epoch, lr), "
                            f"received fn={fn!r}")
        self.fn = fn

    def on_train_begin(self, logs: dict | None = None) -> None:
        _float_learning_rate("LearningRateScheduler", self.model)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        lr = _float_learning_rate("LearningRateScheduler", self.model)
        new = self.fn(epoch, lr)
        _number("LearningRateScheduler", f"fn({epoch}, {lr!r})", new, "a finite float > 0",
                lambda v: math.isfinite(v) and v > 0)
        self.model.optimizer.learning_rate = float(new)
