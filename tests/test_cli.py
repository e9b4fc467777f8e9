"""The command line, driven through real subprocesses."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnnumpy", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_train_on_an_idx_folder_then_summary(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = rng.integers(0, 60, (96, 12, 12))
    for c in range(3):
        images[labels == c, 4 * c: 4 * c + 4, :] = 255
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
    out = tmp_path / "m.safetensors"
    result = run("train", "--data", str(tmp_path), "--model", "simple", "--epochs", "8",
                 "--batch-size", "16", "--lr", "0.01", "--out", str(out))
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.9
    assert out.is_file()
    summary = run("summary", str(out))
    assert summary.returncode == 0 and "Conv2D" in summary.stdout


@pytest.mark.parametrize("args, code, message", [
    (["train", "--data", "/no/such/folder"], 1, "--data '/no/such/folder'"),
    (["train", "--out", "/no/such/dir/m.safetensors"], 1, "--out"),
    (["train", "--model", "resnet"], 2, "invalid choice"),
    (["summary", "/no/such/model.safetensors"], 1, "no model file"),
])
def test_errors_are_one_line_without_traceback(args, code, message):
    result = run(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1
