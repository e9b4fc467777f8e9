"""Callbacks that write files: ModelCheckpoint and CSVLogger."""

from __future__ import annotations

import csv
import os
import string
from typing import Any

import numpy as np

from cnnumpy import io
from cnnumpy.callbacks.base import Callback, _Monitor


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

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Make the folder and write a trial file there: a read-only or full folder fails
        now, before the first epoch."""
        parts = os.path.dirname(os.path.abspath(self.path)).split(os.sep)
        fixed = next((i for i, part in enumerate(parts) if "{" in part), len(parts))
        folder = os.sep.join(parts[:fixed]) or os.sep  # the part free of {fields}
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise type(exc)(f"ModelCheckpoint: cannot create the folder {folder!r} for "
                            f"{self.path!r} ({exc.strerror or exc})") from None
        io.check_writable(os.path.join(folder, "checkpoint"), self.model, "ModelCheckpoint")

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
