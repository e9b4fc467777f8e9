"""A graph gets the stack's speed-ups where it holds the same chain: the passes' rewrites
(ReLU after max pooling, convolution and pooling fused) and one batch slice per thread; the
results are those of the nodes run one by one, on the whole batch, up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import backend, graph_run, layers, shards


def residual(shape=(12, 12, 2)):
    """A stem chain conv(relu) -> pool, a residual block whose branch is a chain, a shared
    convolution called twice, and a head chain ending in the softmax output."""
    cnnumpy.set_seed(4)
    x = cnnumpy.Input(shape, dtype="float64", name="in")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    h = layers.MaxPool2D(2, name="stem_pool")(h)
    r = layers.Conv2D(4, 3, padding="same", activation="relu", name="b1")(h)
    r = layers.Conv2D(4, 1, name="b2")(r)
    h = layers.Add(name="add")([h, r])
    shared = layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    h = layers.Average(name="avg")([shared(h), shared(layers.ReLU(name="relu")(h))])
    h = layers.Conv2D(6, 3, activation="relu", name="c3")(h)
    h = layers.MaxPool2D(2, name="pool3")(h)
    h = layers.Flatten(name="flat")(h)
    y = layers.Dense(3, activation="softmax", name="head")(h)
    return x, y


def _grads_after_one_batch(model, x, y):
    model.compile("sgd", "sparse_categorical_crossentropy")
    y_pred, value, grad = model._forward_loss(x, y, True)
    model._backward(grad)
    return y_pred, value, [g.copy() for g in model.trainable_weights()[1]]


def _data(n=13, shape=(12, 12, 2), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, classes, n)


def test_single_consumer_runs_are_chains():
    model = cnnumpy.Model(*residual())
    steps = [[n.layer.name for n in step] for step in model._steps]
    assert steps == [["stem", "stem_pool"], ["b1", "b2"], ["add"], ["shared"], ["relu", "shared"],
                     ["avg"], ["c3", "pool3", "flat", "head"]]


def test_chains_are_rewritten_and_equal_the_nodes_run_one_by_one(monkeypatch):
    x, y = _data()
    model = cnnumpy.Model(*residual())
    got = _grads_after_one_batch(model, x, y)
    monkeypatch.setattr(graph_run, "REWRITE_CHAINS", False)
    plain = cnnumpy.Model(model.input, model.output)  # the same layers, node by node
    assert all(len(step) == 1 for step in plain._steps)
    want = _grads_after_one_batch(plain, x, y)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
    assert got[1] == pytest.approx(want[1], rel=1e-12)
    for a, b in zip(got[2], want[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.predict(x), plain.predict(x), rtol=1e-12, atol=1e-13)
    # the public forward/backward pair goes through the chains too
    dy = np.random.default_rng(1).standard_normal((len(x), 3))
    model.forward(x, training=True)
    passes = model._passes[0].passes  # (a training step drops them after its backward)
    assert any(p._fused for p in passes), "no convolution and pooling were fused"
    assert any(p._moved for p in passes), "no ReLU was moved after a pooling"
    dx = model.backward(dy)
    plain.forward(x, training=True)
    np.testing.assert_allclose(dx, plain.backward(dy), rtol=1e-10, atol=1e-12)


def _train(model, x, y, steps=3):
    model.compile(cnnumpy.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    logs = [model.train_on_batch(x, y) for _ in range(steps)]
    return logs, [p.copy() for p in model.trainable_weights()[0]], model.predict(x)


@pytest.mark.parametrize("threads", [2, 3])
def test_graph_steps_on_batch_slices_equal_whole_batch_steps(threads, monkeypatch):
    x, y = _data()
    counts = []
    real = shards.count
    monkeypatch.setattr(shards, "count", lambda *a: counts.append(real(*a)) or counts[-1])
    backend.set_num_threads(threads)
    try:
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 4)
        got = _train(cnnumpy.Model(*residual()), x, y)
        assert counts[0] == threads and counts[-1] == threads  # training, then predict
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 10**9)
        want = _train(cnnumpy.Model(*residual()), x, y)
        assert counts[-1] is None
    finally:
        backend.set_num_threads(None)
    for a, b in zip(got[0], want[0], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)
    for a, b in zip(got[1] + [got[2]], want[1] + [want[2]], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _one(make):
    def build(x):
        return make()(x)
    return build


def _merge(merge):
    def build(x):
        a = layers.Conv2D(3, 1, name="a")(x)
        return merge()([a, layers.Conv2D(3, 1, name="b")(x)])
    return build


PER_SAMPLE = {
    "DepthwiseConv2D": _one(lambda: layers.DepthwiseConv2D(3, depth_multiplier=2)),
    "SeparableConv2D": _one(lambda: layers.SeparableConv2D(3, 3, padding="same")),
    "Conv2DTranspose": _one(lambda: layers.Conv2DTranspose(3, 3, strides=2)),
    "UpSampling2D": _one(lambda: layers.UpSampling2D(2, interpolation="bilinear")),
    "ZeroPadding2D": _one(lambda: layers.ZeroPadding2D(1)),
    "Cropping2D": _one(lambda: layers.Cropping2D(1)),
    "Reshape": _one(lambda: layers.Reshape((3, 12, 2))),
    "ReLU": _one(lambda: layers.ReLU(max_value=0.5, negative_slope=0.1)),
    "Add": _merge(layers.Add),
    "Subtract": _merge(layers.Subtract),
    "Multiply": _merge(layers.Multiply),
    "Average": _merge(layers.Average),
    "Concatenate": _merge(layers.Concatenate),
}


@pytest.mark.parametrize("name", sorted(PER_SAMPLE))
def test_each_per_sample_layer_is_split_and_equal(name, monkeypatch):
    """Each layer a graph may hold is split in training, with the same loss, gradients and
    predictions as the whole batch."""
    def model():
        cnnumpy.set_seed(5)
        x = cnnumpy.Input((6, 6, 2), dtype="float64")
        h = layers.Conv2D(2, 3, padding="same", name="first")(x)  # weights before the layer
        h = PER_SAMPLE[name](h)
        y = layers.Dense(3, activation="softmax", name="out")(layers.Flatten(name="f")(h))
        return cnnumpy.Model(x, y)

    x, y = _data(8, (6, 6, 2))
    m = model()
    assert name in {type(layer).__name__ for layer in m.layers}
    assert all(type(layer) in shards.SPLITTABLE for layer in m.layers)
    backend.set_num_threads(2)
    try:
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 4)
        assert shards.count(m.layers, 8, training=True) == 2
        got = _grads_after_one_batch(m, x, y)
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 10**9)
        want = _grads_after_one_batch(model(), x, y)
    finally:
        backend.set_num_threads(None)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
    for a, b in zip(got[2], want[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
