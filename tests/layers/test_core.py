"""Flatten, Dense, Activation and Dropout: gradients, PyTorch parity, errors and configs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer_gradients

import cnnumpy
from cnnumpy.functional.activations import ACTIVATIONS
from cnnumpy.layers.core import Activation, Dense, Dropout, Flatten

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {np.float64: 1e-10, np.float32: 1e-4}

TORCH_ACTIVATIONS = {
    "relu": TF.relu,
    "relu6": TF.relu6,
    "swish": TF.silu,
    "silu": TF.silu,
    "leaky_relu": lambda t: TF.leaky_relu(t, 0.01),
    "elu": lambda t: TF.elu(t, 1.0),
    "gelu": lambda t: TF.gelu(t, approximate="tanh"),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda t: torch.softmax(t, dim=-1),
    "linear": lambda t: t,
}


def randn(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_every_activation_has_a_torch_reference():
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)


# ----- Flatten ---------------------------------------------------------------------------------
def test_flatten_forward_backward():
    x = randn((2, 3, 4, 5))
    layer = Flatten()
    y = layer(x)
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    assert layer.compute_output_shape((None, 3, 4, 5)) == (None, 60)
    dy = randn((2, 60), seed=1)
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(2, 3, 4, 5))
    check_layer_gradients(Flatten(), randn((1, 3, 2, 2)))


# ----- Dense -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_gradients(activation, use_bias):
    layer = Dense(4, activation=activation, use_bias=use_bias)
    check_layer_gradients(layer, randn((3, 5)))
    assert set(layer.grads) == ({"kernel", "bias"} if use_bias else {"kernel"})


def test_dense_on_higher_rank_input():
    layer = Dense(3, activation="tanh")
    check_layer_gradients(layer, randn((2, 4, 5)))
    assert layer(randn((2, 4, 5))).shape == (2, 4, 3)
    assert layer.compute_output_shape((4, 5)) == (4, 3)
    assert layer.params["kernel"].shape == (5, 3) and layer.params["bias"].shape == (3,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_matches_torch_linear(dtype):
    g = np.random.default_rng(2)
    for trial, activation in enumerate(sorted(ACTIVATIONS)):
        batch, n_in, units = (int(v) for v in g.integers(1, 7, size=3))
        use_bias = trial % 3 != 2
        layer = Dense(units, activation=activation, use_bias=use_bias, dtype=dtype.__name__)
        x = g.standard_normal((batch, n_in)).astype(dtype)
        y = layer(x)
        if use_bias:
            layer.params["bias"] = g.standard_normal(units).astype(dtype)
            y = layer(x)
        dy = g.standard_normal(y.shape).astype(dtype)
        dx = layer.backward(dy)

        linear = torch.nn.Linear(n_in, units, bias=use_bias, dtype=torch.float64)
        linear = linear.to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.params["kernel"].T.copy()))
            if use_bias:
                linear.bias.copy_(torch.from_numpy(layer.params["bias"]))
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = TORCH_ACTIVATIONS[activation](linear(xt))
        yt.backward(torch.from_numpy(dy))
        tol, where = TOL[dtype], f"Dense activation={activation}"
        assert y.dtype == dtype and dx.dtype == dtype
        np.testing.assert_allclose(y, yt.detach().numpy(), atol=tol, err_msg=where)
        np.testing.assert_allclose(dx, xt.grad.numpy(), atol=tol, err_msg=where)
        np.testing.assert_allclose(layer.grads["kernel"], linear.weight.grad.numpy().T,
                                   atol=tol, err_msg=where)
        if use_bias:
            np.testing.assert_allclose(layer.grads["bias"], linear.bias.grad.numpy(), atol=tol)


def test_dense_initializer_and_dtype():
    cnnumpy.set_seed(0)
    layer = Dense(4, kernel_initializer="zeros")
    layer.build((3,))
    assert layer.params["kernel"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["kernel"], 0)
    assert layer.count_params() == 16
    limit = np.sqrt(6 / (30 + 20))
    kernel = Dense(20, dtype="float64")
    kernel.build((30,))
    assert kernel.params["kernel"].dtype == np.float64
    assert np.abs(kernel.params["kernel"]).max() <= limit


# ----- Activation ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch(name, dtype):
    x = randn((3, 4, 5), seed=3, dtype=dtype) * 3
    dy = randn((3, 4, 5), seed=4, dtype=dtype)
    layer = Activation(name)
    y = layer(x)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = TORCH_ACTIVATIONS[name](xt)
    yt.backward(torch.from_numpy(dy))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=TOL[dtype])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradients(name):
    check_layer_gradients(Activation(name), randn((2, 6), seed=5))


# ----- Dropout ---------------------------------------------------------------------------------
def test_dropout_scaling_and_statistics():
    cnnumpy.set_seed(1)
    rate = 0.3
    x = np.abs(randn((200, 500), seed=6)) + 0.5
    layer = Dropout(rate)
    y = layer(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-12)
    assert abs(kept.mean() - (1 - rate)) < 0.01
    dy = randn(x.shape, seed=7)
    np.testing.assert_allclose(layer.backward(dy), dy * kept / (1 - rate), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout_matches_torch_scaling(dtype):
    # Same mask in both: torch's dropout is the input times mask / (1 - p).
    cnnumpy.set_seed(2)
    rate = 0.4
    x = randn((50, 40), seed=8, dtype=dtype)
    layer = Dropout(rate)
    y = layer(x, training=True)
    mask = torch.from_numpy((y != 0).astype(dtype))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = xt * mask / (1 - rate)
    yt.sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL[dtype])
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), xt.grad.numpy(), atol=TOL[dtype])
    t_out = TF.dropout(torch.ones(100_000, dtype=torch.float64), rate, training=True)
    assert set(np.unique(t_out.numpy())) <= {0.0, 1 / (1 - rate)}
    assert set(np.unique(Dropout(rate)(np.ones((100, 1000), dtype), training=True))) <= {
        dtype(0), dtype(1 / (1 - rate))}


def test_dropout_is_identity_at_inference_and_rate_zero():
    x = randn((4, 5), seed=9)
    layer = Dropout(0.5)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)


def test_dropout_uses_library_generator_only():
    x = np.ones((10, 10))
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    cnnumpy.set_seed(5)
    a = Dropout(0.5)(x, training=True)
    cnnumpy.set_seed(5)
    b = Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert not np.array_equal(Dropout(0.5)(x, training=True), a)


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.7])
def test_dropout_gradients_in_training(rate):
    check_layer_gradients(Dropout(rate), randn((3, 7), seed=10), training=True)


# ----- errors and configs ----------------------------------------------------------------------
@pytest.mark.parametrize("make, error, bad", [
    (lambda: Dense(0), ValueError, "units=0"),
    (lambda: Dense(2.5), ValueError, "units=2.5"),
    (lambda: Dense(True), ValueError, "units=True"),
    (lambda: Dense(3, activation="mish"), ValueError, "'mish'"),
    (lambda: Dense(3, kernel_initializer="uniformish"), ValueError, "'uniformish'"),
    (lambda: Dense(3, use_bias="yes"), TypeError, "use_bias='yes'"),
    (lambda: Activation("mish"), ValueError, "'mish'"),
    (lambda: Dropout(1.0), ValueError, "rate=1.0"),
    (lambda: Dropout(-0.1), ValueError, "rate=-0.1"),
    (lambda: Dropout("0.5"), ValueError, "rate='0.5'"),
])
def test_bad_arguments(make, error, bad):
    with pytest.raises(error) as info:
        make()
    assert bad in str(info.value)
    assert any(cls in str(info.value) for cls in ("Dense", "Activation", "Dropout"))


def test_wrong_input_shape_names_the_layer():
    layer = Dense(3, name="fc")
    layer(np.ones((2, 4)))
    with pytest.raises(ValueError, match="Dense 'fc'"):
        layer(np.ones((2, 5)))
    with pytest.raises(ValueError, match="Dense 'fc2'"):
        Dense(3, name="fc2")(np.ones(4))
    flat = Flatten(name="flat")
    flat(np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="Flatten 'flat'"):
        flat(np.ones((2, 9)))


@pytest.mark.parametrize("layer", [
    Flatten(), Flatten(input_shape=(3, 3, 2), name="flat"),
    Dense(5), Dense(3, "relu", False, "he_normal", input_shape=(4,), name="d", dtype="float64"),
    Activation("relu"), Activation("linear"), Activation(activation="softmax", name="probs"),
    Dropout(0.25), Dropout(0.5, name="drop", input_shape=(8,)),
], ids=lambda la: type(la).__name__)
def test_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_configs_hold_constructor_arguments():
    assert Activation("relu").get_config()["activation"] == "relu"
    assert Activation("linear").get_config()["activation"] == "linear"
    config = Dense(3, "tanh", use_bias=False).get_config()
    assert (config["units"], config["activation"], config["use_bias"]) == (3, "tanh", False)
    assert config["kernel_initializer"] == "glorot_uniform"
    assert Dropout(0.3).get_config()["rate"] == 0.3
