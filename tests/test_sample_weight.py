"""sample_weight and class_weight: the loss is mean(weight * per-sample loss), as in Keras."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import numerical_grad

import cnnumpy
from cnnumpy import layers, losses

CASES = [
    (losses.MeanSquaredError(), lambda r: r.normal(size=(5, 3))),
    (losses.BinaryCrossentropy(from_logits=True), lambda r: r.integers(0, 2, (5, 3)) * 1.0),
    (losses.CategoricalCrossentropy(from_logits=True), lambda r: np.eye(3)[r.integers(0, 3, 5)]),
    (losses.SparseCategoricalCrossentropy(from_logits=True), lambda r: r.integers(0, 3, 5)),
    (losses.SparseCategoricalCrossentropy(), lambda r: r.integers(0, 3, 5)),
]


@pytest.mark.parametrize("loss, targets", CASES, ids=lambda c: type(c).__name__)
def test_weighted_value_and_gradient(loss, targets):
    rng = np.random.default_rng(0)
    y = targets(rng)
    z = rng.normal(size=(5, 3))
    if not loss.from_logits:
        z = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    w = np.array([0.0, 1.0, 2.0, 0.5, 3.0])
    per_sample = [loss(y[i:i + 1], z[i:i + 1]) for i in range(5)]
    value, grad = loss.value_and_grad(y, z, w)
    assert value == pytest.approx(np.mean(w * per_sample), rel=1e-12)
    np.testing.assert_allclose(grad, numerical_grad(lambda: loss(y, z, w), z),
                               atol=1e-6, rtol=1e-4)
    ones_value, ones_grad = loss.value_and_grad(y, z, np.ones(5))
    plain_value, plain_grad = loss.value_and_grad(y, z)
    assert ones_value == pytest.approx(plain_value, rel=1e-15)
    np.testing.assert_allclose(ones_grad, plain_grad, rtol=1e-15)


def _model():
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Flatten(input_shape=(2, 2, 1)),
                                layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(cnnumpy.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.build()
    return model


def test_class_weight_equals_the_sample_weights_it_implies():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 2, 2, 1)), rng.integers(0, 3, 12)
    a = _model()
    a.fit(x, y, epochs=2, batch_size=4, verbose=0, class_weight={0: 1.0, 1: 3.0, 2: 0.5})
    b = _model()
    b.fit(x, y, epochs=2, batch_size=4, verbose=0, sample_weight=np.array([1.0, 3.0, 0.5])[y])
    np.testing.assert_array_equal(a.layers[1].params["kernel"], b.layers[1].params["kernel"])
    c = _model()  # the same shuffles as a and b: the seed is reset before each
    c.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert not np.allclose(a.layers[1].params["kernel"], c.layers[1].params["kernel"])


def test_zero_weights_mean_no_update():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 2, 2, 1)), rng.integers(0, 3, 6)
    model = _model()
    before = model.layers[1].params["kernel"].copy()
    model.fit(x, y, epochs=1, batch_size=3, verbose=0, sample_weight=np.zeros(6))
    np.testing.assert_array_equal(model.layers[1].params["kernel"], before)


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_weight": np.ones(5)}, "one number per sample"),
    ({"sample_weight": -np.ones(6)}, ">= 0"),
    ({"class_weight": {0: 1.0}}, "no weight for classes"),
    ({"class_weight": [1.0, 2.0]}, "dict"),
    ({"class_weight": {0: 1.0, 1: 1.0, 2: 1.0}, "sample_weight": np.ones(6)}, "not both"),
])
def test_bad_weights_are_named(kwargs, match):
    x, y = np.zeros((6, 2, 2, 1)), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises((ValueError, TypeError), match=match):
        _model().fit(x, y, verbose=0, **kwargs)


def _weighted_loss(model, x, y, w):
    """sum(w * per-sample loss) / N, written out from the loss on one sample at a time."""
    probs = model.predict(x)
    per_sample = [model.loss(y[i:i + 1], probs[i:i + 1]) for i in range(len(x))]
    return float(np.sum(w * np.array(per_sample)) / len(x))


def test_evaluate_takes_sample_weight():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(10, 2, 2, 1)), rng.integers(0, 3, 10)
    w = rng.uniform(0, 3, 10)
    model = _model()
    result = model.evaluate(x, y, batch_size=3, sample_weight=w)
    assert result["loss"] == pytest.approx(_weighted_loss(model, x, y, w), rel=1e-12)
    assert result["loss"] != pytest.approx(model.evaluate(x, y)["loss"], rel=1e-3)
    with pytest.raises(ValueError, match=r"Sequential.evaluate: sample_weight must hold one"):
        model.evaluate(x, y, sample_weight=np.ones(9))


def test_val_loss_is_weighted_by_the_validation_tails_sample_weight():
    """As in Keras, the samples validation_split sets aside keep their weights."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 2, 2, 1)), rng.integers(0, 3, 20)
    w = rng.uniform(0, 3, 20)
    model = _model()
    history = model.fit(x, y, epochs=1, batch_size=5, validation_split=0.25, verbose=0,
                        sample_weight=w)
    want = _weighted_loss(model, x[15:], y[15:], w[15:])
    assert history.history["val_loss"][0] == pytest.approx(want, rel=1e-12)
    assert history.history["val_loss"][0] != pytest.approx(
        model.evaluate(x[15:], y[15:])["loss"], rel=1e-3)
    again = _model()  # validation_data may carry weights too
    history = again.fit(x[:15], y[:15], epochs=1, batch_size=5, verbose=0,
                        sample_weight=w[:15], validation_data=(x[15:], y[15:], w[15:]))
    assert history.history["val_loss"][0] == pytest.approx(want, rel=1e-12)


def test_class_weight_weighs_training_only():
    """Keras applies class_weight to the training batches, not to validation."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20, 2, 2, 1)), rng.integers(0, 3, 20)
    model = _model()
    history = model.fit(x, y, epochs=1, batch_size=5, validation_split=0.25, verbose=0,
                        class_weight={0: 0.1, 1: 5.0, 2: 1.0})
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[15:], y[15:])["loss"], rel=1e-12)


def test_class_weight_rounds_float_labels():
    """A smoothed binary label 0.95 is class 1 (Keras rounds), not class 0."""
    from cnnumpy.inputs import sample_weights

    y = np.array([0.95, 0.05, 0.6, 0.4, 1.0, 0.0])
    np.testing.assert_array_equal(sample_weights(y, {0: 1.0, 1: 7.0}, None),
                                  [7.0, 1.0, 7.0, 1.0, 7.0, 1.0])
    np.testing.assert_array_equal(sample_weights(y[:, None], {0: 1.0, 1: 7.0}, None),
                                  [7.0, 1.0, 7.0, 1.0, 7.0, 1.0])
    soft = np.array([[0.1, 0.9], [0.8, 0.2]])  # one-hot or soft targets: the largest entry
    np.testing.assert_array_equal(sample_weights(soft, {0: 1.0, 1: 7.0}, None), [7.0, 1.0])


@pytest.mark.parametrize("n, split, n_train", [(100, 0.29, 71), (100, 0.1, 90), (10, 0.25, 7),
                                               (7, 0.5, 3), (100, 0.001, 99)])
def test_validation_split_keeps_floor_of_the_training_share(n, split, n_train):
    """Keras trains on floor(n * (1 - split)) samples and validates on the rest."""
    seen = []

    class Count(cnnumpy.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(n, 2, 2, 1)), rng.integers(0, 3, n)
    model = _model()
    history = model.fit(x, y, epochs=1, batch_size=1, validation_split=split, verbose=0,
                        callbacks=[Count()])
    assert len(seen) == n_train
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[n_train:], y[n_train:])["loss"], rel=1e-12)
