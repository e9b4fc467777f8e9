"""``feature_maps.layer_outputs`` on graph models: one entry per node, each output equal to
what the model itself computes at that node."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers as L
from cnnumpy import models
from cnnumpy.feature_maps import layer_outputs


def residual_with_shared_layer() -> cnnumpy.Model:
    """conv + pool, a residual block whose two convolutions are one shared layer, a
    projection merged by Concatenate, global pooling, dense."""
    x = inputs = cnnumpy.Input((10, 10, 1), dtype="float64", name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    x = L.MaxPool2D(2, name="pool")(x)
    shared = L.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    h = shared(shared(x))
    x = L.Add(name="add")([x, h])
    x = L.Concatenate(name="concat")([x, L.Conv2D(2, 1, name="proj")(x)])
    x = L.GlobalAvgPool2D(name="gap")(x)
    return cnnumpy.Model(inputs, L.Dense(3, activation="softmax", name="fc")(x))


def models_own_value(model: cnnumpy.Model, node, x: np.ndarray) -> np.ndarray:
    """What ``model`` computes at ``node``: a model of the same layers ending there."""
    return cnnumpy.Model(model.input, node.output).predict(x[None])[0]


def check_against_the_graph(model: cnnumpy.Model, image: np.ndarray, rtol: float) -> list:
    trace = layer_outputs(model, image)
    assert [t.node for t in trace] == model._nodes  # node order, one entry per call
    assert [t.index for t in trace] == list(range(len(trace)))
    np.testing.assert_array_equal(trace[0].output, image)
    for t in trace[1:]:
        np.testing.assert_allclose(t.output, models_own_value(model, t.node, image),
                                   rtol=rtol, atol=rtol)
        sources = [layer_outputs_by_tensor(trace)[id(s)] for s in t.node.inputs]
        got = t.input if isinstance(t.input, list) else [t.input]
        assert len(got) == len(sources)
        for a, b in zip(got, sources, strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(trace[-1].output, model.predict(image[None])[0],
                               rtol=rtol, atol=rtol)
    return trace


def layer_outputs_by_tensor(trace: list) -> dict:
    return {id(t.node.output): t.output for t in trace}


def test_a_residual_model_with_a_shared_layer_gives_every_calls_output():
    model = residual_with_shared_layer()
    image = np.random.default_rng(0).uniform(0, 1, (10, 10, 1))
    trace = check_against_the_graph(model, image, rtol=1e-12)
    assert [t.name for t in trace] == ["image", "stem", "pool", "shared", "shared[1]", "add",
                                       "proj", "concat", "gap", "fc"]
    add = trace[5]
    assert isinstance(add.input, list) and len(add.input) == 2  # a merge gets its inputs
    np.testing.assert_allclose(add.output, add.input[0] + add.input[1], rtol=1e-12)
    # the shared layer's two calls: the same weights on different inputs
    first, second = trace[3], trace[4]
    np.testing.assert_array_equal(second.input, first.output)
    assert not np.allclose(first.output, second.output)


def test_a_unet_gives_each_convolutions_output_as_the_model_computes_it():
    model = models.unet((16, 16, 1), 2, base_filters=4, depth=2)
    image = np.random.default_rng(1).uniform(0, 1, (16, 16, 1)).astype(np.float32)
    trace = check_against_the_graph(model, image, rtol=1e-5)
    kinds = {type(t.layer).__name__ for t in trace}
    assert {"Conv2D", "Conv2DTranspose", "Concatenate", "MaxPool2D"} <= kinds
    concat = next(t for t in trace if isinstance(t.layer, L.Concatenate))
    np.testing.assert_array_equal(concat.output, np.concatenate(concat.input, axis=-1))


def test_a_stack_is_unchanged():
    model = cnnumpy.Sequential([L.Conv2D(2, 3, input_shape=(6, 6, 1)), L.Flatten(),
                                L.Dense(2)])
    image = np.random.default_rng(2).uniform(0, 1, (6, 6, 1)).astype(np.float32)
    trace = layer_outputs(model, image)
    assert [t.layer for t in trace] == model.layers and trace[0].node is None
    assert [t.name for t in trace] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(trace[-1].output, model.predict(image[None])[0],
                               rtol=1e-6)


def test_a_graph_models_input_must_have_its_shape():
    model = residual_with_shared_layer()
    with pytest.raises(ValueError, match=r"takes images of shape \(10, 10, 1\), received "
                       r"\(9, 10, 1\)"):
        layer_outputs(model, np.zeros((9, 10, 1)))
