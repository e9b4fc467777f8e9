"""The Callback base class, History, and the helpers the built-in callbacks share."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


class Callback:
    """Base class: override any of the hooks; each does nothing by default."""

    def __init__(self) -> None:
        self.model: Any = None

    def set_model(self, model: Any) -> None:
        """Called by ``fit`` before training, with the model being trained."""
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Called once, before the first epoch."""
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        """Called once, after the last epoch, with the last epoch's logs."""
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Called before each epoch (counted from 0)."""
        pass

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called after each epoch with its logs (``loss``, the metrics, ``val_*``, ``lr``)."""
        pass

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before each training batch (counted from 0 in each epoch)."""
        pass

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after each training batch with its logs (``loss``)."""
        pass


class History(Callback):
    """Records the logs of every epoch: ``history["loss"]``, ``history["val_accuracy"]``, ...

    ``Sequential.fit`` returns one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


# ----- argument checks and the monitored quantity --------------------------------------------


def _number(where: str, name: str, value: Any, expected: str, ok: Callable[[float], bool]) -> float:
    is_number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not is_number or math.isnan(value) \
            or not ok(float(value)):
        raise ValueError(f"{where}: {name} must be {expected}, received {name}={value!r}")
    return float(value)


def _count(where: str, name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise ValueError(f"{where}: {name} must be an int >= 0, received {name}={value!r}")
    return int(value)


class _Monitor:
    """The quantity a callback watches: its name, direction and minimal improvement."""

    def __init__(self, where: str, monitor: Any, mode: Any, min_delta: Any = 0.0) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{where}: monitor must be a non-empty string such as 'val_loss', "
                             f"received monitor={monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{where}: mode must be 'auto', 'min' or 'max', "
                             f"received mode={mode!r}")
        self.where, self.name, self.mode = where, monitor, mode
        self.min_delta = _number(where, "min_delta", min_delta, "a finite float >= 0",
                                 lambda v: math.isfinite(v) and v >= 0)
        self.maximize = mode == "max" or (mode == "auto" and "acc" in monitor)

    @property
    def worst(self) -> float:
        return -math.inf if self.maximize else math.inf

    def value(self, epoch: int, logs: dict | None) -> float:
        """The monitored value in ``logs``; a ValueError listing the keys when it is absent."""
        logs = logs or {}
        if self.name not in logs:
            hint = " (val_* keys need validation_split or validation_data in fit)" \
                if self.name.startswith("val_") else ""
            raise ValueError(f"{self.where}: monitor={self.name!r} is not in the logs of epoch "
                             f"{epoch + 1}; available keys: {sorted(logs)}{hint}")
        return float(logs[self.name])

    def improved(self, current: float, best: float) -> bool:
        """True when ``current`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
        if self.maximize:
            return current - self.min_delta > best
        return current + self.min_delta < best


def _float_learning_rate(where: str, model: Any) -> float:
    lr = getattr(model.optimizer, "learning_rate", None)
    if callable(lr) or lr is None:
        raise TypeError(f"{where}: the optimizer's learning_rate is {lr!r}; this callback only "
                        "changes a float learning rate, not a schedule. Compile with a float "
                        "learning_rate, or use the schedule alone")
    return float(lr)


# ----- the callbacks ---------------------------------------------------------------------------
