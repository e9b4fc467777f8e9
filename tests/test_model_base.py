"""One model base: ``Sequential`` and ``Model`` share one training surface (one ``fit``),
and a graph model's messages name ``Model``, not ``Sequential``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.model_base import BaseModel

SHARED = ("compile", "fit", "evaluate", "predict", "train_on_batch", "train_step",
          "trainable_weights", "count_params", "save", "summary", "get_layer")


def _graph():
    x = cnnumpy.Input((6, 6, 1), name="image")
    h = layers.Conv2D(3, 3, activation="relu", name="conv")(x)
    h = layers.Add(name="add")([h, layers.Conv2D(3, 1, name="skip")(h)])
    y = layers.Dense(2, activation="softmax", name="head")(layers.Flatten(name="flat")(h))
    return cnnumpy.Model(x, y, name="g")


def _stack():
    return cnnumpy.Sequential([layers.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 1)),
                               layers.Flatten(), layers.Dense(2, activation="softmax")])


@pytest.mark.parametrize("name", SHARED)
def test_the_training_surface_is_written_once_in_the_base(name):
    for cls in (cnnumpy.Sequential, cnnumpy.Model):
        assert issubclass(cls, BaseModel)
        assert getattr(cls, name) is getattr(BaseModel, name), (cls, name)
        assert inspect.getattr_static(cls, name) is inspect.getattr_static(BaseModel, name)
    # Model borrows nothing from Sequential
    assert not issubclass(cnnumpy.Model, cnnumpy.Sequential)


def test_a_graph_model_names_itself_in_its_messages():
    model = _graph()
    x = np.zeros((4, 6, 6, 1), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"^Model\.fit: call compile"):
        model.fit(x, y)
    with pytest.raises(ValueError, match=r"^Model\.predict: x must have shape"):
        model.predict(np.zeros((4, 5, 5, 1)))
    with pytest.raises(ValueError, match=r"^Model\.predict: batch_size"):
        model.predict(x, batch_size=0)
    with pytest.raises(ValueError, match=r"^Model\.get_layer: no layer named 'nope'"):
        model.get_layer("nope")
    model.compile("sgd", "sparse_categorical_crossentropy")
    for kwargs, pattern in [({"verbose": 5}, r"^Model\.fit: verbose"),
                            ({"epochs": -1}, r"^Model\.fit: epochs"),
                            ({"validation_split": 2.0}, r"^Model\.fit: validation_split"),
                            ({"sample_weight": np.ones(3)}, r"^Model\.fit: sample_weight")]:
        with pytest.raises(ValueError, match=pattern):
            model.fit(x, y, **{"verbose": 0, **kwargs})
    with pytest.raises(ValueError, match=r"^Model\.evaluate: y does not fit the loss"):
        model.evaluate(x, np.full(4, 7))
    with pytest.raises(ValueError, match=r"^Model\.compile: loss is required"):
        model.compile("sgd")


def test_sequential_still_names_sequential():
    model = _stack()
    with pytest.raises(ValueError, match=r"^Sequential\.fit: call compile"):
        model.fit(np.zeros((2, 6, 6, 1)), np.zeros(2))
    with pytest.raises(ValueError, match=r"^Sequential\.get_layer: no layer named 'nope'"):
        model.get_layer("nope")


def test_one_fit_trains_both_kinds_the_same_way():
    """The same chain as a stack and as a graph, same weights and data: one fit loop gives
    the same weights after an epoch."""
    cnnumpy.set_seed(0)
    stack = _stack()
    x = cnnumpy.Input((6, 6, 1))
    h = x
    for layer in stack.layers:
        h = layer.__class__.from_config(layer.get_config())(h)
    graph = cnnumpy.Model(x, h)
    for a, b in zip(stack.layers, graph.layers[1:], strict=True):
        b.set_weights(a.get_weights())
    rng = np.random.default_rng(0)
    data, labels = rng.normal(size=(40, 6, 6, 1)).astype(np.float32), rng.integers(0, 2, 40)
    for model in (stack, graph):
        model.compile("sgd", "sparse_categorical_crossentropy")
        cnnumpy.set_seed(1)
        model.fit(data, labels, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(stack.layers, graph.layers[1:], strict=True):
        for key, value in a.get_weights().items():
            np.testing.assert_allclose(b.get_weights()[key], value, rtol=1e-5, atol=1e-6)
