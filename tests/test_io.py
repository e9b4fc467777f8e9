"""Model files: round trips, atomic writes, and refusing what does not match."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.io import ModelFormatError, load_model


def trained_model(dtype="float32"):
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([
        layers.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 2)),
        layers.BatchNormalization(),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(4, activation="softmax"),
    ], dtype=dtype)
    model.compile(cnnumpy.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6, 6, 2)), rng.integers(0, 4, 16)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    return model, x.astype(dtype), y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_identical(tmp_path, dtype):
    model, x, y = trained_model(dtype)
    path = str(tmp_path / "model.safetensors")
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.layers[1].state["moving_mean"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded.layers[1].state["moving_variance"],
                                  model.layers[1].state["moving_variance"])
    assert loaded.optimizer.iterations == model.optimizer.iterations


def test_training_resumes_exactly_from_a_file(tmp_path):
    model, x, y = trained_model("float64")
    path = str(tmp_path / "ckpt.safetensors")
    model.save(path)
    loaded = load_model(path)
    for m in (model, loaded):
        cnnumpy.set_seed(11)  # the same dropout masks for both
        m.train_on_batch(x[:8], y[:8])
    for a, b in zip(model.layers, loaded.layers, strict=True):
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    model, _, _ = trained_model()
    path = tmp_path / "m.safetensors"
    model.save(str(path))
    first = path.read_bytes()
    model.layers[0].params["kernel"] += 1
    model.save(str(path))
    assert path.read_bytes() != first
    assert os.listdir(tmp_path) == ["m.safetensors"]


def _rewrite(path, tensors=None, metadata_update=None):
    from safetensors.numpy import load_file, save_file

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    arrays = load_file(path)
    if tensors is not None:
        arrays = tensors(arrays)
    meta.update(metadata_update or {})
    save_file(arrays, path, metadata=meta)


def test_mismatched_tensors_are_listed_together(tmp_path):
    model, _, _ = trained_model()
    path = str(tmp_path / "m.safetensors")
    model.save(path)

    def damage(arrays):
        arrays.pop("layers.0.bias")
        arrays["layers.4.kernel"] = np.zeros((2, 2), np.float32)
        arrays["layers.9.extra"] = np.zeros(1, np.float32)
        return arrays

    _rewrite(path, damage)
    with pytest.raises(ModelFormatError) as info:
        load_model(path)
    message = str(info.value)
    assert "missing tensor 'layers.0.bias'" in message
    assert "'layers.4.kernel' has shape (2, 2)" in message
    assert "unexpected tensor 'layers.9.extra'" in message


@pytest.mark.parametrize("damage, match", [
    (lambda a: a.update({"optimizer.0.exp_avg": np.zeros((7, 7), np.float32)}),
     r"'optimizer.0.exp_avg' has shape \(7, 7\), its parameter \(3, 3, 2, 3\)"),
    (lambda a: [a.pop(k) for k in list(a) if k.startswith("optimizer.5.")],
     "optimizer state for 5 parameters, the model has 6"),
])
def test_optimizer_state_that_does_not_fit_the_weights_is_refused_at_load(tmp_path, damage,
                                                                          match):
    """Not at the first training step, as a ValueError naming no file."""
    model, _, _ = trained_model()
    path = str(tmp_path / "m.safetensors")
    model.save(path)

    def damaged(arrays):
        damage(arrays)
        return arrays

    _rewrite(path, damaged)
    with pytest.raises(ModelFormatError, match=match):
        load_model(path)


@pytest.mark.parametrize("update, match", [
    ({"format_version": "99"}, "written by a newer cnnumpy"),
    ({"format_version": ""}, "format_version"),
    ({"format": "keras"}, "not a cnnumpy model file"),
    ({"model_config": json.dumps({"layers": [{"class_name": "os.system", "config": {}}]})},
     "unknown layer class 'os.system'"),
    ({"model_config": '{"a": 1, "a": 2}'}, "duplicate keys"),
    ({"model_config": "not json"}, "not valid JSON"),
])
def test_bad_metadata_is_refused(tmp_path, update, match):
    model, _, _ = trained_model()
    path = str(tmp_path / "m.safetensors")
    model.save(path)
    _rewrite(path, metadata_update=update)
    with pytest.raises(ModelFormatError, match=match):
        load_model(path)


@pytest.mark.parametrize("data, match", [
    (b"\x80\x04K\x01.", "pickle"),
    (b"PK\x03\x04rest", "zip"),
    (b"abc", "too short"),
    (struct.pack("<Q", 10**12) + b"{}", "header length"),
    (struct.pack("<Q", 4) + b"[1] ", "not a JSON object"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "UTF-8"),
])
def test_malformed_files_are_refused(tmp_path, data, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ModelFormatError, match=match):
        load_model(str(path))


def test_truncated_files_raise_only_model_format_errors(tmp_path):
    model, _, _ = trained_model()
    path = tmp_path / "m.safetensors"
    model.save(str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for size in range(0, len(data), max(1, len(data) // 97)):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFormatError):
            load_model(str(cut))


def test_resume_from_a_checkpoint_equals_an_unbroken_run(tmp_path):
    """Shuffling and dropout continue exactly: the checkpoint holds the generator's state."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(24, 6, 6, 2)), rng.integers(0, 4, 24)

    def fresh():
        model, _, _ = trained_model("float64")
        return model

    straight = fresh()
    straight.fit(x, y, epochs=4, initial_epoch=2, batch_size=5, verbose=0)
    first = fresh()
    first.fit(x, y, epochs=3, initial_epoch=2, batch_size=5, verbose=0)
    path = str(tmp_path / "ckpt.safetensors")
    first.save(path)
    cnnumpy.set_seed(999)  # a new process would start from anywhere
    resumed = load_model(path)
    assert resumed.epoch == 3 and resumed.rng_state is not None
    cnnumpy.backend.set_rng_state(resumed.rng_state)
    resumed.fit(x, y, epochs=4, initial_epoch=resumed.epoch, batch_size=5, verbose=0)
    for a, b in zip(straight.layers, resumed.layers, strict=True):
        for key, value in a.get_weights().items():
            np.testing.assert_array_equal(value, b.get_weights()[key])


def test_a_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    model, x, _ = trained_model()
    path = tmp_path / "m.safetensors"
    for extra in range(600):  # grow the metadata until the length's first byte is 0x80
        model.class_names = ["x" * extra]
        model.save(str(path))
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    np.testing.assert_array_equal(load_model(str(path)).predict(x), model.predict(x))


class _OwnWeights(layers.Layer):
    """A user layer written the older way: its weights made in its own ``_create_weights``."""

    def _create_weights(self, input_shape):
        rng = cnnumpy.backend.rng()
        self.params["scale"] = rng.normal(size=input_shape[-1:]).astype(self.dtype)
        self.state["offset"] = np.zeros(input_shape[-1:], dtype=self.dtype)

    def call(self, x, training):
        return x * self.params["scale"] + self.state["offset"]

    def call_backward(self, dy):
        return dy * self.params["scale"]


def test_a_layer_with_its_own_create_weights_loads_without_moving_the_generator(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setitem(layers.LAYERS, "_OwnWeights", _OwnWeights)
    cnnumpy.set_seed(3)
    model = cnnumpy.Sequential([layers.Flatten(input_shape=(2, 3)), _OwnWeights()])
    model.layers[1].state["offset"] += 0.5
    x = np.random.default_rng(1).normal(size=(4, 2, 3)).astype(np.float32)
    model.save(tmp_path / "m.safetensors")
    before = cnnumpy.backend.rng_state()
    loaded = load_model(tmp_path / "m.safetensors")
    assert cnnumpy.backend.rng_state() == before
    assert sorted(loaded.layers[1].params) == ["scale"]
    assert sorted(loaded.layers[1].state) == ["offset"]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
