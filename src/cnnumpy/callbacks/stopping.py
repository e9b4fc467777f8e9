"""Callbacks that end training: EarlyStopping and TerminateOnNaN."""

from __future__ import annotations

import math

import numpy as np

from cnnumpy.callbacks.base import Callback, _count, _Monitor


class EarlyStopping(Callback):
    """Stop training when the monitored quantity has stopped improving.

    Training stops at the end of the epoch that makes ``patience`` epochs in a row without an
    improvement of more than ``min_delta`` over the best value so far (as in Keras,
    ``patience=0`` and ``patience=1`` both stop after the first epoch without improvement),
    never at the first epoch of a ``fit``: a first value of NaN does not end training.

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
        self._first_epoch = True
        self.best = self._monitor.worst
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: list[dict] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = self._monitor.value(epoch, logs)
        first, self._first_epoch = self._first_epoch, False
        improved = self._monitor.improved(current, self.best)
        if improved:
            self.best, self.best_epoch, self.wait = current, epoch, 0
        if self.restore_best_weights and (improved or self.best_weights is None):
            # as in Keras, the first epoch's weights (e.g. of a NaN value) are kept until
            # an epoch improves, so there is always something to restore
            self.best_epoch = epoch
            self.best_weights = [{k: v.copy() for k, v in layer.get_weights().items()}
                                 for layer in self.model.layers]
        if improved:
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1) and not first:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            for layer, weights in zip(self.model.layers, self.best_weights, strict=True):
                layer.set_weights(weights)


class TerminateOnNaN(Callback):
    """Stop training after a batch whose loss is NaN or infinite (and say so on stdout)."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"TerminateOnNaN: batch {batch + 1} has loss {loss}; stopping training",
                  flush=True)
            self.model.stop_training = True
