"""fit's per-epoch progress: a live bar only where stdout can show one, else one line per epoch."""

from __future__ import annotations

import os
import pty
import sys

import numpy as np

import cnnumpy
from cnnumpy import layers


def _fit(verbose: int) -> None:
    data = np.random.default_rng(0)
    x, y = data.normal(size=(12, 4)).astype("float32"), data.integers(0, 2, size=12)
    model = cnnumpy.Sequential([layers.Dense(2, activation="softmax", input_shape=(4,))])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=4, verbose=verbose)


def _epoch_lines(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if line.startswith("Epoch ")]


def test_verbose_1_into_a_file_or_pipe_prints_one_line_per_epoch(capsys):
    _fit(verbose=1)
    lines = _epoch_lines(capsys.readouterr().out)
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert all("img/s - loss: " in line and "accuracy: " in line for line in lines)


def test_verbose_1_on_a_zero_width_terminal_prints_one_line_per_epoch(monkeypatch):
    # Open MPI gives each rank such a terminal (0 columns) even when mpirun writes to a file;
    # a tqdm bar there comes out as blank lines.
    master, slave = pty.openpty()  # a fresh pseudo-terminal has 0 columns and 0 rows
    assert os.get_terminal_size(slave).columns == 0
    with open(slave, "w", closefd=True) as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        _fit(verbose=1)
        stream.flush()
        monkeypatch.undo()
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed and all is read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    lines = _epoch_lines(b"".join(chunks).decode())
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert all("loss: " in line for line in lines)


def test_verbose_0_prints_nothing(capsys):
    _fit(verbose=0)
    assert capsys.readouterr().out == ""
