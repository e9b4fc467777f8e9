"""The contract every layer keeps (Keras' run_layer_test, in our terms).

For each layer: output shape agrees with ``compute_output_shape``; ``params`` and ``grads``
share keys and shapes after backward; ``count_params`` counts them; the config round-trips;
a model file round-trips; one optimizer step on the layer lowers a loss; the input gradient
matches finite differences. The config, file and gradient checks are the public
``cnnumpy.testing.check_layer``, which users run on their own layers.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.layers import LAYERS
from cnnumpy.testing import check_layer

# (factory, per-sample input shape): one representative configuration per layer class.
CASES = {
    "Conv2D": (lambda: layers.Conv2D(3, 3, padding="same", activation="tanh"), (6, 5, 2)),
    "MaxPool2D": (lambda: layers.MaxPool2D(2), (6, 4, 3)),
    "AvgPool2D": (lambda: layers.AvgPool2D(3, strides=2, padding="same"), (7, 5, 2)),
    "GlobalAvgPool2D": (lambda: layers.GlobalAvgPool2D(), (4, 3, 2)),
    "GlobalMaxPool2D": (lambda: layers.GlobalMaxPool2D(), (4, 3, 2)),
    "Flatten": (lambda: layers.Flatten(), (3, 2, 2)),
    "Dense": (lambda: layers.Dense(4, activation="sigmoid"), (5,)),
    "Activation": (lambda: layers.Activation("elu"), (3, 4)),
    "Dropout": (lambda: layers.Dropout(0.3), (4, 3)),
    "BatchNormalization": (lambda: layers.BatchNormalization(), (3, 3, 2)),
    "RandomFlip": (lambda: layers.RandomFlip("horizontal_and_vertical"), (4, 5, 2)),
    "RandomTranslation": (lambda: layers.RandomTranslation(0.3, 0.4), (5, 6, 2)),
    "RandomCrop": (lambda: layers.RandomCrop(4, 5, padding=1), (5, 6, 2)),
    "RandomRotation": (lambda: layers.RandomRotation(0.1), (5, 6, 2)),
    "RandomContrast": (lambda: layers.RandomContrast(0.5), (4, 4, 3)),
    "RandomErasing": (lambda: layers.RandomErasing(0.8, (0.1, 0.5)), (5, 6, 2)),
    "ReLU": (lambda: layers.ReLU(2.0, negative_slope=0.1, threshold=0.5), (4, 3)),
    "UpSampling2D": (lambda: layers.UpSampling2D((2, 3), interpolation="bilinear"), (3, 4, 2)),
    "ZeroPadding2D": (lambda: layers.ZeroPadding2D(((1, 0), (2, 1))), (3, 4, 2)),
    "Cropping2D": (lambda: layers.Cropping2D(((1, 0), (0, 2))), (4, 5, 2)),
    "Reshape": (lambda: layers.Reshape((-1, 4)), (3, 2, 4)),
    "DepthwiseConv2D": (lambda: layers.DepthwiseConv2D(3, strides=2, padding="same",
                                                       depth_multiplier=2), (5, 6, 2)),
    "SeparableConv2D": (lambda: layers.SeparableConv2D(3, (3, 2), padding="same",
                                                       activation="relu"), (5, 4, 2)),
    "Conv2DTranspose": (lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same",
                                                       activation="tanh"), (3, 4, 2)),
}


def test_every_registered_layer_has_a_case():
    assert set(CASES) == set(LAYERS)


@pytest.fixture(params=sorted(CASES))
def case(request):
    cnnumpy.set_seed(0)
    factory, shape = CASES[request.param]
    return factory, shape


def test_shapes_params_and_grads(case):
    factory, shape = case
    layer = factory()
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.shape == (2, *layer.compute_output_shape(shape))
    assert layer.compute_output_shape((None, *shape)) == (None, *y.shape[1:])
    assert y.dtype == np.float32
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert set(layer.grads) == set(layer.params)
    for key, value in layer.params.items():
        assert layer.grads[key].shape == value.shape, key
    expected = sum(math.prod(a.shape) for a in {**layer.params, **layer.state}.values())
    assert layer.count_params() == expected


def test_config_round_trip(case):
    factory, shape = case
    check_layer(factory(), shape, checks=["config"]).assert_ok()


def test_model_file_round_trip(case):
    factory, shape = case
    check_layer(factory(), shape, checks=["file"]).assert_ok()


TRAINABLE = ["Conv2D", "Dense", "BatchNormalization", "DepthwiseConv2D", "SeparableConv2D",
             "Conv2DTranspose"]


def test_trainable_list_is_complete():
    for name, (factory, shape) in CASES.items():
        layer = factory()
        layer.build(shape)
        assert bool(layer.params) == (name in TRAINABLE), name


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_step_lowers_the_loss(name):
    factory, shape = CASES[name]
    cnnumpy.set_seed(0)
    layer = factory()
    layer.dtype = np.dtype(np.float64)
    layer.build(shape)
    x = np.random.default_rng(2).standard_normal((8, *shape))
    y0 = layer.forward(x, training=True)
    target = np.random.default_rng(3).standard_normal(y0.shape)

    def loss():
        cnnumpy.set_seed(5)
        return float(np.mean((layer.forward(x, training=True) - target) ** 2))

    before = loss()
    cnnumpy.set_seed(5)
    y = layer.forward(x, training=True)
    layer.backward(2 * (y - target) / y.size)
    opt = cnnumpy.optimizers.SGD(learning_rate=0.05)
    keys = list(layer.params)
    opt.apply([layer.params[k] for k in keys], [layer.grads[k] for k in keys])
    assert loss() < before


def test_input_gradient_matches_finite_differences(case):
    factory, shape = case
    check_layer(factory(), shape, checks=["gradients"], seed=4, max_elements=None).assert_ok()


def test_wrong_input_shape_names_the_layer(case):
    factory, shape = case
    layer = factory()
    layer.build(shape)
    bad = np.zeros((2, *shape[:-1], shape[-1] + 1), dtype=np.float32)
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer.forward(bad)


def test_non_numeric_input_is_a_type_error(case):
    factory, shape = case
    layer = factory()
    with pytest.raises(TypeError, match=type(layer).__name__):
        layer.forward(np.full((2, *shape), "a", dtype=object))


def test_wrong_rank_and_complex_input_name_the_layer(case):
    factory, shape = case
    layer = factory()
    layer.build(shape)
    for bad in (np.zeros((2, *shape, 1)), np.zeros((2, *shape[:-1]))):
        received = re.escape(str(bad.shape))
        with pytest.raises(ValueError, match=rf"{type(layer).__name__} '.*expected input of "
                                             rf"shape \(batch, .*received {received}"):
            layer.forward(bad)
    with pytest.raises(TypeError, match=rf"{type(layer).__name__} .*'complex128'"):
        layer.forward(np.zeros((2, *shape), complex))


def test_a_gradient_of_the_wrong_shape_names_the_layer(case):
    factory, shape = case
    layer = factory()
    y = layer.forward(np.ones((2, *shape), np.float32), training=True)
    bad = np.ones((3, *y.shape[1:]), np.float32)
    with pytest.raises(ValueError, match=rf"{type(layer).__name__} .*backward expected dy of "
                                         rf"shape \(2, .*received \(3, "):
        layer.backward(bad)


@pytest.mark.parametrize("training", [False, True])
def test_zero_images_and_one_image(case, training):
    """An empty batch gives an empty output of the right shape (and an empty input gradient,
    zero weight gradients); a batch of one goes forward and backward like any other."""
    factory, shape = case
    layer = factory()
    out_shape = layer.compute_output_shape(shape)
    empty = layer.forward(np.zeros((0, *shape), np.float32), training=training)
    assert empty.shape == (0, *out_shape) and empty.dtype == np.float32
    dx = layer.backward(np.zeros_like(empty))
    assert dx.shape == (0, *shape)
    assert all(not np.any(g) for g in layer.grads.values())
    state = {k: v.copy() for k, v in layer.state.items()}
    one = layer.forward(np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32),
                        training=training)
    assert one.shape == (1, *out_shape) and np.isfinite(one).all()
    assert layer.backward(np.ones_like(one)).shape == (1, *shape)
    if not training:
        for key, value in state.items():  # inference leaves moving statistics alone
            np.testing.assert_array_equal(layer.state[key], value)
