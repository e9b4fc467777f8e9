"""Training on one slice of the batch per thread equals training on the whole batch."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import backend, layers, shards
from cnnumpy.passes import Passes


def _model(last: str, loss: str, extra: list | None = None,
           lazy: bool = False) -> cnnumpy.Sequential:
    """The test model; built at once, or with ``lazy`` by its first batch (no input_shape)."""
    cnnumpy.set_seed(2)
    model = cnnumpy.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=None if lazy else (10, 10, 2)),
        layers.MaxPool2D(2),
        layers.Conv2D(5, 3, padding="same"),
        layers.Activation("relu"),
        layers.AvgPool2D(2),
        *(extra or []),
        layers.Flatten(),
        layers.Dense(6, activation="relu"),
        layers.Dense(3, activation=last),
    ], dtype="float64")
    model.compile(optimizer=cnnumpy.optimizers.Adam(0.01), loss=loss)
    return model


def _train(model: cnnumpy.Sequential, x: np.ndarray, y: np.ndarray, steps: int) -> tuple:
    logs = [model.train_on_batch(x, y) for _ in range(steps)]
    grads = [g.copy() for g in model.trainable_weights()[1]]
    return logs, grads, [p.copy() for p in model.trainable_weights()[0]], model.predict(x)


@pytest.mark.parametrize("last, loss", [("softmax", "sparse_categorical_crossentropy"),
                                        ("linear", "mse")])
@pytest.mark.parametrize("threads", [2, 3])
def test_split_steps_equal_whole_batch_steps(last, loss, threads, monkeypatch):
    """Loss, gradients and weights after three steps, with the loss fused into the last
    layer's logits and without; 3 threads cut 13 samples into 4 + 4 + 5."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((13, 10, 10, 2))
    y = rng.integers(0, 3, 13) if loss.startswith("sparse") else rng.standard_normal((13, 3))
    calls = []
    real = shards.split

    def spy(layers, n, training=True):
        result = real(layers, n, training)
        if training:
            calls.append(result)
        return result

    monkeypatch.setattr(shards, "split", spy)
    backend.set_num_threads(threads)
    try:
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 4)
        got = _train(_model(last, loss), x, y, 3)
        assert calls[-1] is not None
        sizes = [shard.part.stop - shard.part.start for shard in calls[-1]]
        assert sizes == {2: [6, 7], 3: [4, 4, 5]}[threads]
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 10**9)
        want = _train(_model(last, loss), x, y, 3)
        assert calls[-1] is None
    finally:
        backend.set_num_threads(None)
    for a, b in zip(got[0], want[0], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-12)
    for group_got, group_want in zip(got[1:], want[1:], strict=True):
        for a, b in zip(group_got, group_want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("extra", [[layers.Dropout(0.5)], [layers.BatchNormalization()]])
def test_random_or_batch_statistic_layers_are_never_split(extra, monkeypatch):
    monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 1)
    model = _model("softmax", "sparse_categorical_crossentropy", extra)
    x = np.random.default_rng(1).standard_normal((8, 10, 10, 2))
    backend.set_num_threads(2)
    try:
        model.train_on_batch(x, np.zeros(8, dtype=int))  # builds the layers
        assert shards.split(model.layers, 8) is None
        assert shards.split(_model("linear", "mse", lazy=True).layers, 8) is None  # not built
        built = _model("linear", "mse")
        built.predict(x)
        assert len(shards.split(built.layers, 8)) == 2
        assert shards.split(built.layers, 1) is None  # one sample: nothing to split
    finally:
        backend.set_num_threads(None)


def test_shards_share_the_weights_and_keep_their_own_gradients():
    model = _model("linear", "mse")
    model.predict(np.zeros((1, 10, 10, 2)))
    shard = shards.Shard(model.layers, slice(0, 4))
    for twin, layer in zip(shard.layers, model.layers, strict=True):
        assert twin is not layer and twin.params is layer.params
        assert twin.grads == layer.grads and twin.grads is not layer.grads


def test_inference_on_each_threads_share_of_the_batch(monkeypatch):
    """A large batch goes through every layer in one slice per thread (Dropout and
    BatchNormalization too: in inference they treat each sample alone); the values equal
    the whole batch's up to rounding. Unbuilt layers, or a small batch, run whole."""
    monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 4)
    stack = _model("softmax", "sparse_categorical_crossentropy",
                   [layers.Dropout(0.5), layers.BatchNormalization()], lazy=True).layers
    x = np.random.default_rng(1).standard_normal((21, 10, 10, 2))
    sizes = []
    real = backend.parallel_map

    def spy(fn, items):
        if all(isinstance(item, shards.Shard) for item in items):
            sizes.append([item.part.stop - item.part.start for item in items])
        return real(fn, items)

    monkeypatch.setattr(backend, "parallel_map", spy)
    backend.set_num_threads(3)
    try:
        first = shards.infer(stack, x)  # builds the layers, on this thread
        assert sizes == []
        whole = Passes().forward(stack, x, training=False)
        np.testing.assert_array_equal(first, whole)
        split = shards.infer(stack, x)
        assert sizes == [[7, 7, 7]]
        np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)
        shards.infer(stack, x[:11])  # 2 slices: fewer than 4 images a thread on 3
        assert sizes[-1] == [5, 6]
        shards.infer(stack, x[:7])  # fewer than 4 a thread even on 2: whole
        assert len(sizes) == 2
    finally:
        backend.set_num_threads(None)


def test_evaluate_splits_its_batches_too(monkeypatch):
    model = _model("softmax", "sparse_categorical_crossentropy")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 10, 10, 2)), rng.integers(0, 3, 20)
    model.predict(x[:1])  # builds the layers
    splits = []
    real = shards.split
    monkeypatch.setattr(shards, "split", lambda *a: splits.append(real(*a)) or splits[-1])
    backend.set_num_threads(2)
    try:
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 4)
        got = model.evaluate(x, y, batch_size=16)  # batches of 16 (split) and 4 (whole)
        assert [s is not None for s in splits] == [True, False]
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 10**9)
        want = model.evaluate(x, y, batch_size=16)
    finally:
        backend.set_num_threads(None)
    assert got.keys() == want.keys()
    for key in got:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12)
