"""Files cnnumpy writes get the mode ``open(path, "w")`` would give them (0666 less the umask),
or keep the mode of the file they replace; the atomic write's temporary file is private."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

import cnnumpy
from cnnumpy import files, layers
from cnnumpy.callbacks import ModelCheckpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def small_model():
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Conv2D(2, 3, input_shape=(6, 6, 1)), layers.Flatten(),
                                layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.build()
    return model


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_model_files_follow_the_umask(tmp_path, umask):
    path = tmp_path / "m.safetensors"
    small_model().save(str(path))
    assert mode(path) == 0o666 & ~umask


def test_checkpoints_follow_the_umask(tmp_path, umask):
    model = small_model()
    x = np.zeros((4, 6, 6, 1), np.float32)
    model.fit(x, np.zeros(4, int), epochs=1, verbose=0,
              callbacks=[ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.safetensors"))])
    assert mode(tmp_path / "ckpt-1.safetensors") == 0o666 & ~umask


def test_plots_and_feature_maps_follow_the_umask(tmp_path, umask):
    pytest.importorskip("matplotlib")
    from cnnumpy.plot import plot_feature_maps, plot_history

    plot_history({"loss": [1.0, 0.5]}, str(tmp_path / "history.png"))
    plot_feature_maps(small_model(), np.zeros((6, 6, 1), np.float32), str(tmp_path / "maps.png"))
    assert mode(tmp_path / "history.png") == 0o666 & ~umask
    assert mode(tmp_path / "maps.png") == 0o666 & ~umask


def test_onnx_exports_follow_the_umask(tmp_path, umask):
    pytest.importorskip("onnx")
    from cnnumpy import onnx as cnnumpy_onnx

    cnnumpy_onnx.export(small_model(), tmp_path / "m.onnx")
    assert mode(tmp_path / "m.onnx") == 0o666 & ~umask


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    small_model().save(str(path))
    assert mode(path) == 0o640
    cnnumpy.load_model(str(path))


def test_the_temporary_file_is_private_until_renamed(tmp_path, umask, monkeypatch):
    seen = []
    replace = os.replace

    def spy_write(fd, data):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_write(fd, data)

    real_write = files._write_synced
    monkeypatch.setattr(files, "_write_synced", spy_write)
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(mode(a)), replace(a, b)))
    files.atomic_write(str(tmp_path / "f.bin"), b"data")
    assert seen == [0o600, 0o666 & ~umask]
    assert (tmp_path / "f.bin").read_bytes() == b"data"


def test_the_umask_is_found_without_proc_too(umask, monkeypatch):
    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(files, "open", no_proc, raising=False)  # as on macOS or Windows
    assert files._umask() == umask
    assert os.umask(umask) == umask  # and it was left as it was
