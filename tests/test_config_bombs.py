"""A model file's config cannot make ``load_model`` allocate memory or spend time at will: every
shape is checked against the file's tensors before anything is allocated, and loading draws
nothing from the random generator."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc

import numpy as np
import pytest

import cnnumpy
from cnnumpy import backend, layers
from cnnumpy.io import ModelFormatError, load_model


def small_model():
    """Conv2D(4, 3) on 8x8x1 -> (6, 6, 4) -> Flatten (144) -> Dense(3): the kernel is (144, 3)."""
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8, 1)), layers.Flatten(),
                                layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.build()
    return model


def with_config(tmp_path, edit, raw=None) -> str:
    """A valid model file whose model_config is edited by ``edit`` (or replaced by ``raw``)."""
    from safetensors.numpy import load_file, save_file

    path = str(tmp_path / "m.safetensors")
    small_model().save(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    config = json.loads(meta["model_config"])
    if edit is not None:
        edit(config)
    meta["model_config"] = raw if raw is not None else json.dumps(config)
    save_file(load_file(path), path, metadata=meta)
    return path


def layer(config, i):
    return config["layers"][i]["config"]


BOMBS = {
    "dense units 1e6": lambda c: layer(c, 2).update(units=1_000_000),
    "dense units 2e7": lambda c: layer(c, 2).update(units=20_000_000),
    "dense units 1e30": lambda c: layer(c, 2).update(units=10**30),
    "conv filters 1e9": lambda c: layer(c, 0).update(filters=10**9),
    "conv kernel 1e5": lambda c: layer(c, 0).update(kernel_size=[10**5, 10**5],
                                                     input_shape=[10**5, 10**5, 1]),
    "input shape 1e9": lambda c: layer(c, 0).update(input_shape=[10**9, 10**9, 3]),
    "input rank 100": lambda c: layer(c, 0).update(input_shape=[4] * 100),
    "5000 layers": lambda c: c["layers"].extend(
        [{"class_name": "Dropout", "config": {"rate": 0.1}}] * 5000),
    "nested layer config": lambda c: layer(c, 2).update(name=json.loads("[" * 900 + "]" * 900)),
}


def refused_fast_and_small(path: str, match: str | None = None) -> ModelFormatError:
    tracemalloc.start()
    start = time.process_time()  # CPU time: other work on a busy machine does not count
    try:
        with pytest.raises(ModelFormatError, match=match) as info:
            load_model(path)
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, f"refused after {elapsed:.2f} s of CPU time"  # 4 s and GBs before
    assert peak < 4_000_000, f"peak allocation {peak:,} bytes"
    return info.value


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_config_bombs_are_refused_fast_and_small(tmp_path, bomb):
    path = with_config(tmp_path, BOMBS[bomb])
    cnnumpy.set_seed(7)
    state = backend.rng_state()
    refused_fast_and_small(path)
    assert backend.rng_state() == state


def test_the_weights_a_config_implies_are_bounded_by_the_file(tmp_path):
    error = refused_fast_and_small(with_config(tmp_path, BOMBS["dense units 2e7"]))
    implied = 4 * (3 * 3 * 1 * 4 + 4 + 144 * 20_000_000 + 20_000_000)  # float32 at least
    assert f"implies at least {implied:,} bytes of weights" in str(error)


def test_activations_are_bounded_even_when_the_weights_fit(tmp_path):
    def huge_images(config):  # a global pooling keeps every weight's shape as it was
        layer(config, 0).update(input_shape=[100_000, 100_000, 1])
        config["layers"][1] = {"class_name": "GlobalAvgPool2D", "config": {}}
        layer(config, 2)["units"] = 3

    path = with_config(tmp_path, huge_images)
    refused_fast_and_small(path, match=r"an input of shape \(100000, 100000, 1\) per sample")


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000,
                                 '{"layers": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_deeply_nested_json_is_refused(tmp_path, raw):
    refused_fast_and_small(with_config(tmp_path, None, raw=raw), match="nested too deeply|bad")


def test_a_deeply_nested_header_is_refused(tmp_path):
    text = ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    path = tmp_path / "nested.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    refused_fast_and_small(str(path), match="nested too deeply")


def test_loading_and_predicting_leave_the_generator_as_it_was(tmp_path):
    path = str(tmp_path / "m.safetensors")
    model = small_model()
    model.save(path)
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    cnnumpy.set_seed(123)
    state = backend.rng_state()
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert backend.rng_state() == state


def test_weight_shapes_are_the_shapes_build_makes():
    cases = [(layers.Dense(5), (7,)), (layers.Dense(5, use_bias=False), (3, 7)),
             (layers.Conv2D(6, (3, 2), groups=2), (9, 9, 4)),
             (layers.Conv2D(2, 1, use_bias=False), (4, 4, 3)),
             (layers.BatchNormalization(), (5, 5, 3)), (layers.MaxPool2D(2), (4, 4, 1))]
    for lay, shape in cases:
        expected = lay.weight_shapes(shape)
        lay.build(shape)
        assert {k: v.shape for k, v in lay.get_weights().items()} == expected
        assert list(lay.get_weights()) == list(expected)


def test_building_from_given_weights_draws_nothing_and_checks_shapes():
    state = backend.rng_state()
    dense = layers.Dense(3)
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3)
    dense.build((4,), weights={"kernel": kernel, "bias": np.ones(3, np.float32)})
    np.testing.assert_array_equal(dense.params["kernel"], kernel)
    assert backend.rng_state() == state
    with pytest.raises(ValueError, match=r"Dense 'dense.*'kernel' has shape \(5, 3\)"):
        layers.Dense(3).build((4,), weights={"kernel": np.zeros((5, 3)), "bias": np.ones(3)})
