"""Model files from strangers: nothing executed, nothing imported, bounded memory, only
ModelFormatError for anything malformed, and no half-written file after a crash."""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.io import ModelFormatError, load_model


def raw_file(path, header: dict, data: bytes = b"") -> str:
    """A file claiming to be a cnnumpy model (unless ``header`` has its own metadata)."""
    encoded = json.dumps({"__metadata__": {"format": "cnnumpy"}, **header}).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return str(path)


def tiny_model():
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Conv2D(2, 3, input_shape=(5, 5, 1)), layers.Flatten(),
                                layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.build()
    return model


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name", ["model.safetensors", "model.pkl"])
def test_a_pickle_never_runs(tmp_path, name):
    marker = tmp_path / "marker"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(ModelFormatError, match="this is a pickle, not a cnnumpy model file"):
        load_model(str(path))
    assert not marker.exists()


def test_metadata_cannot_turn_safety_off_or_import_anything(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "m.safetensors"
    tiny_model().save(str(path))
    arrays = load_file(str(path))
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    assert "antigravity" not in sys.modules
    meta.update(safe_mode="false", module="antigravity", callable="antigravity.fly")
    config = json.loads(meta["model_config"])
    config["layers"][0]["config"]["module"] = "antigravity"
    meta["model_config"] = json.dumps(config)
    save_file(arrays, str(path), metadata=meta)
    with pytest.raises(ModelFormatError):  # "module" is not a Conv2D argument: refused
        load_model(str(path))
    del config["layers"][0]["config"]["module"]
    config["layers"][0]["class_name"] = "antigravity.fly"
    meta["model_config"] = json.dumps(config)
    save_file(arrays, str(path), metadata=meta)
    with pytest.raises(ModelFormatError, match="unknown layer class 'antigravity.fly'"):
        load_model(str(path))
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize("header, data, match", [
    ({"a": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}, 16, "'a'.*dtype 'C64'"),
    ({"a": {"dtype": "O", "shape": [2], "data_offsets": [0, 16]}}, 16, "'a'.*dtype 'O'"),
    ({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, 16, "'a'.*'F128'"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8, "'a'.*needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "'a'.*bad shape"),
    ({"a": {"dtype": "F32", "shape": [10**18, 10**18], "data_offsets": [0, 4]}}, 4,
     "'a'.*bad shape"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12, "'b' overlaps"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, 12, "'b' leaves a gap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 8, "file has 8 bytes"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, 4, "exactly"),
])
def test_bad_tensor_tables_name_the_tensor(tmp_path, header, data, match):
    path = raw_file(tmp_path / "bad.safetensors", header, b"\0" * data)
    with pytest.raises(ModelFormatError, match=match):
        load_model(path)


def test_huge_declared_shapes_allocate_nothing(tmp_path):
    header = {"a": {"dtype": "F64", "shape": [2**31, 2**31], "data_offsets": [0, 64]}}
    path = raw_file(tmp_path / "big.safetensors", header, b"\0" * 64)
    tracemalloc.start()
    with pytest.raises(ModelFormatError):
        load_model(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < os.path.getsize(path) + 1_000_000


def test_non_string_metadata_and_non_object_headers(tmp_path):
    path = raw_file(tmp_path / "a.safetensors", {"__metadata__": {"format": 1}})
    with pytest.raises(ModelFormatError, match="strings"):
        load_model(path)
    path = tmp_path / "b.safetensors"
    path.write_bytes(struct.pack("<Q", 12) + b'{"a":1,"a":2')
    with pytest.raises(ModelFormatError):
        load_model(str(path))


def test_every_prefix_of_a_valid_file_is_a_model_format_error(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_model().save(str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for size in range(len(data)):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFormatError):
            load_model(str(cut))
    cut.write_bytes(data)
    load_model(str(cut))


WRITER = textwrap.dedent("""
    import sys, numpy as np, cnnumpy
    from cnnumpy import layers
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Dense(256, input_shape=(512,)), layers.Dense(256)])
    model.compile("adam", "mse")
    model.build()
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        model.layers[0].params["bias"][:] = i
        model.save(sys.argv[1])
""")


def test_a_process_killed_while_saving_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        model = load_model(str(path))  # whatever was last renamed into place is whole
        bias = model.layers[0].params["bias"]
        assert np.all(bias == bias[0]) and bias[0] >= 1


def _zip(entry: str) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(entry, b"\x80\x02}q\x00.")
    return buffer.getvalue()


NOT_MODELS = {
    "photo.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40), "a PNG image"),
    "photo.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(40), "a JPEG image"),
    "anim.gif": (b"GIF89a" + bytes(40), "a GIF image"),
    "model.pkl": (pickle.dumps({"w": [1.0] * 20}), "a pickle"),
    "model.pt": (_zip("archive/data.pkl"), "a PyTorch .pt file"),
    "arrays.npz": (_zip("w.npy"), "a zip/npz archive"),
    "model.onnx": (b"\x08\x08\x12\x07pytorch\x1a\x032.1:\x9a\x01" + bytes(40), "an ONNX file"),
    "data.gz": (b"\x1f\x8b\x08\x00" + bytes(40), "a gzip file"),
    "notes.txt": (b"A model trained on digits, accuracy 99%.\n", "a text file"),
    "config.json": (b'{"name": "lenet", "layers": []}\n', "JSON text"),
}


@pytest.mark.parametrize("name", sorted(NOT_MODELS))
def test_a_file_that_is_not_a_model_says_what_it_looks_like(tmp_path, name):
    data, kind = NOT_MODELS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelFormatError) as info:
        load_model(str(path))
    assert f"{path}: this is {kind}" in str(info.value)
    assert "not a cnnumpy model file" in str(info.value)


def test_summary_of_a_photo_says_it_is_not_a_model(tmp_path):
    (tmp_path / "photo.png").write_bytes(NOT_MODELS["photo.png"][0])
    result = subprocess.run([sys.executable, "-m", "cnnumpy", "summary", "photo.png"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "photo.png: this is a PNG image, not a cnnumpy model" in lines[0]


def test_a_pytorch_state_dict_in_safetensors_is_not_a_model_file(tmp_path):
    """Named as such (its int64 counter is not what is wrong with it), pointing to from_torch."""
    from safetensors.numpy import save_file

    path = str(tmp_path / "lenet.safetensors")
    save_file({"0.weight": np.zeros((8, 1, 5, 5), np.float32),
               "1.num_batches_tracked": np.zeros((), np.int64)}, path)
    with pytest.raises(ModelFormatError, match=r"lenet.safetensors: a safetensors file but not a "
                                               r"cnnumpy model file \(format=None\); .*from_torch"):
        load_model(path)
