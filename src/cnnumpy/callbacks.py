"""Callbacks: hooks into ``Sequential.fit`` (the Keras protocol).

A callback sees the model as ``self.model``; setting ``model.stop_training = True`` ends
training after the current batch.
"""

from __future__ import annotations

from typing import Any


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
