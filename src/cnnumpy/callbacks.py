"""Callbacks: hooks into ``Sequential.fit`` (the Keras protocol).

A callback sees the model as ``self.model``; setting ``model.stop_training = True`` ends
training after the current batch. ``fit`` passes each epoch's logs (``"loss"``, the metrics,
and ``"val_*"`` when there is validation data) to ``on_epoch_end`` and each batch's loss and
metrics to ``on_batch_end``. Epoch numbers count from 0, including the ``initial_epoch`` offset.
"""

from __future__ import annotations

import csv
import math
import os
import string
from collections.abc import Callable
from typing import Any

import numpy as np


class Callback:
    """Base class: override any of the hooks; each does nothing by default."""

    def __init__(self) -> None:
        self.model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
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
class EarlyStopping(Callback):
    """Stop training when the monitored quantity has stopped improving.

    Training stops at the end of the epoch that makes ``patience`` epochs in a row without an
    improvement of more than ``min_delta`` over the best value so far (as in Keras,
    ``patience=0`` and ``patience=1`` both stop after the first epoch without improvement).

    Args:
        monitor: key of the epoch logs to watch, e.g. "val_loss" or "val_accuracy".
        patience: epochs without improvement to tolerate before stopping (an int >= 0).
        min_delta: smallest change that counts as an improvement (a float >= 0).
        mode: "min", "max", or "auto" ("max" when the name contains "acc", else "min").
        restore_best_weights: at the end of training, put back the weights of the best epoch.

    Attributes:
        best: the best value seen; best_epoch: its epoch (from 0); stopped_epoch: the epoch
        at which training was stopped, or None.

    Raises:
        ValueError: at the end of an epoch whose logs lack ``monitor``.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        super().__init__()
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = _count("EarlyStopping", "patience", patience)
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise TypeError("EarlyStopping: restore_best_weights must be a bool, "
                            f"received restore_best_weights={restore_best_weights!r}")
        self.restore_best_weights = bool(restore_best_weights)
        self.monitor, self.mode, self.min_delta = monitor, mode, self._monitor.min_delta
        self.on_train_begin()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait = 0
        self.best = self._monitor.worst
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: list[dict] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = self._monitor.value(epoch, logs)
        if self._monitor.improved(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = [{k: v.copy() for k, v in layer.get_weights().items()}
                                     for layer in self.model.layers]
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            for layer, weights in zip(self.model.layers, self.best_weights, strict=True):
                layer.set_weights(weights)


class ModelCheckpoint(Callback):
    """Save the model (``model.save``: atomic, with the optimizer and generator state) after
    every epoch, or only when the monitored quantity improves.

    Args:
        path: file path; it may name ``{epoch}`` (from 1) and any key of the epoch logs as
            ``str.format`` fields, e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.safetensors".
            Missing folders are created.
        monitor: key of the epoch logs compared when ``save_best_only``.
        save_best_only: save only when ``monitor`` beats the best value so far.
        mode: "min", "max", or "auto" ("max" when the name contains "acc", else "min").

    Attributes:
        best: the best monitored value seen; saved: the paths written, in order.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto") -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"ModelCheckpoint: path must be a non-empty path, received "
                             f"path={path!r}")
        path = os.fspath(path)
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
        except ValueError as exc:
            raise ValueError(f"ModelCheckpoint: path {path!r} is not a valid format string "
                             f"({exc})") from None
        if any(f == "" or f.isdigit() for f in fields):
            raise ValueError(f"ModelCheckpoint: path {path!r} has a positional field; name "
                             "the field, e.g. {epoch} or {val_loss:.3f}")
        if not isinstance(save_best_only, (bool, np.bool_)):
            raise TypeError("ModelCheckpoint: save_best_only must be a bool, "
                            f"received save_best_only={save_best_only!r}")
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self.path, self.monitor, self.mode = path, monitor, mode
        self.save_best_only = bool(save_best_only)
        self.best = self._monitor.worst
        self.saved: list[str] = []

    def format_path(self, epoch: int, logs: dict | None) -> str:
        """The file name for ``epoch`` (from 0; ``{epoch}`` shows ``epoch + 1``)."""
        logs = logs or {}
        try:
            return self.path.format(**{**logs, "epoch": epoch + 1})
        except KeyError as exc:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} names {{{exc.args[0]}}}, "
                             f"which is not in the logs of epoch {epoch + 1}; available: "
                             f"{['epoch', *sorted(logs)]}") from None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save_best_only:
            current = self._monitor.value(epoch, logs)
            if not self._monitor.improved(current, self.best):
                return
            self.best = current
        path = self.format_path(epoch, logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)
        self.saved.append(path)


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


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (from 0) then the log keys, sorted.

    The header comes from the first epoch's logs; a key missing later is written as "NA".
    The file is flushed after every row, so it can be read while training runs.

    Args:
        path: the CSV file.
        append: add to an existing file (no second header) instead of replacing it.
        separator: the field separator, one character.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False,
                 separator: str = ",") -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"CSVLogger: path must be a non-empty path, received path={path!r}")
        if not isinstance(append, (bool, np.bool_)):
            raise TypeError(f"CSVLogger: append must be a bool, received append={append!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError("CSVLogger: separator must be one character, "
                             f"received separator={separator!r}")
        self.path, self.append, self.separator = os.fspath(path), bool(append), separator
        self._file: Any = None
        self._writer: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        has_rows = self.append and os.path.isfile(self.path) and os.path.getsize(self.path) > 0
        self._file = open(self.path, "a" if self.append else "w", newline="")
        self._writer = None
        self._header_written = has_rows

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self._writer is None:
            fields = ["epoch", *sorted(logs)]
            self._writer = csv.DictWriter(self._file, fieldnames=fields, restval="NA",
                                          extrasaction="ignore", delimiter=self.separator)
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: repr(float(v)) for k, v in logs.items()}})
        self._file.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


class TerminateOnNaN(Callback):
    """Stop training after a batch whose loss is NaN or infinite (and say so on stdout)."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"TerminateOnNaN: batch {batch + 1} has loss {loss}; stopping training",
                  flush=True)
            self.model.stop_training = True
