"""Metrics: each one with every label shape its loss accepts, directly and through the loops."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers, metrics

N = 40


def _model(units: int, activation: str | None, loss: str) -> cnnumpy.Sequential:
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Dense(units, activation=activation, input_shape=(3,))])
    model.compile(cnnumpy.optimizers.SGD(0.1), loss, metrics=["accuracy"])
    return model


def _labels(kind: str, shape: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "sparse":
        y = rng.integers(0, 4, N)
    elif kind == "categorical":
        y = np.eye(4)[rng.integers(0, 4, N)]
    else:  # binary targets for one output
        y = rng.integers(0, 2, N).astype(np.float32)
    return y.reshape(N, 1) if shape == "(N, 1)" else y


def _expected(kind: str, y: np.ndarray, probs: np.ndarray) -> float:
    """The accuracy written out by hand, one sample at a time."""
    hits = []
    for i in range(N):
        if kind == "sparse":
            hits.append(int(np.argmax(probs[i])) == int(np.ravel(y[i])[0]))
        elif kind == "categorical":
            hits.append(int(np.argmax(probs[i])) == int(np.argmax(y[i])))
        else:
            hits.append((probs[i, 0] > 0.5) == (np.ravel(y[i])[0] > 0.5))
    return float(np.mean(hits))


# (label kind, label shape, units, activation, loss): every label shape the losses accept
CASES = [
    ("sparse", "(N,)", 4, "softmax", "sparse_categorical_crossentropy"),
    ("sparse", "(N, 1)", 4, "softmax", "sparse_categorical_crossentropy"),
    ("categorical", "(N, C)", 4, "softmax", "categorical_crossentropy"),
    ("binary", "(N,)", 1, "sigmoid", "binary_crossentropy"),
    ("binary", "(N, 1)", 1, "sigmoid", "binary_crossentropy"),
    ("binary", "(N,)", 1, None, "mse"),
    ("binary", "(N, 1)", 1, None, "mse"),
]


@pytest.mark.parametrize("kind, shape, units, activation, loss", CASES)
def test_accuracy_in_evaluate_train_on_batch_and_fit(kind, shape, units, activation, loss):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 3)).astype(np.float32)
    y = _labels(kind, shape, rng)
    model = _model(units, activation, loss)
    before = _expected(kind, y, model.predict(x))
    assert 0 < before < 1  # a test that can tell a right table from a broadcast one
    assert model.evaluate(x, y, batch_size=7)["accuracy"] == pytest.approx(before)
    # one batch of all N samples: the training accuracy is that of the weights before the step
    history = model.fit(x, y, epochs=1, batch_size=N, validation_data=(x, y), verbose=0)
    assert history.history["accuracy"][0] == pytest.approx(before)
    after = _expected(kind, y, model.predict(x))
    assert history.history["val_accuracy"][0] == pytest.approx(after)
    assert model.train_on_batch(x, y)["accuracy"] == pytest.approx(after)


def test_binary_accuracy_takes_flat_labels_for_one_output():
    probs = np.array([[0.9], [0.2], [0.7], [0.4]], np.float32)
    labels = np.array([1.0, 0.0, 1.0, 1.0])
    assert metrics.binary_accuracy(labels, probs) == 0.75
    assert metrics.binary_accuracy(labels[:, None], probs) == 0.75
    with pytest.raises(ValueError, match=r"binary_accuracy: y_true must have the shape"):
        metrics.binary_accuracy(labels[:3], probs)


def test_binary_accuracy_per_pixel_labels_without_the_last_axis():
    probs = np.array([[[0.9], [0.1]], [[0.2], [0.8]]])  # (2, 2, 1)
    assert metrics.binary_accuracy(np.array([[1, 0], [1, 1]]), probs) == 0.75
