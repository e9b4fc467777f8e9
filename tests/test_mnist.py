"""A LeNet-like model trained on real handwritten digits reaches at least 97% test accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.datasets import load_mnist_sample
from cnnumpy.optimizers.schedules import CosineDecay


def lenet():
    return cnnumpy.Sequential([
        layers.Conv2D(32, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPool2D(2),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


@pytest.mark.slow
def test_lenet_reaches_97_percent_on_the_bundled_10k_digits():
    (x_train, y_train), (x_test, y_test) = load_mnist_sample()
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    cnnumpy.set_seed(0)
    model = lenet()
    epochs, batch_size = 3, 64
    schedule = CosineDecay(2e-3, decay_steps=epochs * len(x_train) // batch_size)
    model.compile(cnnumpy.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    result = model.evaluate(x_test, y_test, batch_size=256)
    assert result["accuracy"] >= 0.97, result
    assert np.isfinite(result["loss"])
