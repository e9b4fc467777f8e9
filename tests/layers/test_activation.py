"""The ReLU layer (Keras' max_value, negative_slope, threshold): gradients, PyTorch parity,
errors; and the activation names relu6, swish and silu in layers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer_gradients

import cnnumpy
from cnnumpy import layers
from cnnumpy.layers import ReLU

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {np.float64: 1e-10, np.float32: 1e-5}


def randn(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def torch_relu(max_value, negative_slope, threshold):
    """Keras' definition, written with torch operations."""
    def fn(t):
        above = t if max_value is None else torch.clamp(t, max=max_value)
        return torch.where(t > threshold, above, negative_slope * (t - threshold))
    return fn


# The library's own torch functions where one exists, else the definition above.
CASES = [
    ((), TF.relu),
    ((6.0,), TF.relu6),
    ((None, 0.2), lambda t: TF.leaky_relu(t, 0.2)),
    ((None, 0.0, 1.0), torch.nn.Threshold(1.0, 0.0)),
    ((2.5, 0.3, 0.5), torch_relu(2.5, 0.3, 0.5)),
    ((0.0, 0.1), torch_relu(0.0, 0.1, 0.0)),
    ((1.0, 0.0, 2.0), torch_relu(1.0, 0.0, 2.0)),  # max_value below the threshold
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("args, reference", CASES, ids=lambda v: str(v) if
                         isinstance(v, tuple) else "")
def test_relu_matches_torch(args, reference, dtype):
    x = randn((3, 4, 5, 2), seed=1, dtype=dtype) * 4
    dy = randn(x.shape, seed=2, dtype=dtype)
    layer = ReLU(*args)
    y = layer(x)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = reference(xt)
    yt.backward(torch.from_numpy(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("args", [a for a, _ in CASES], ids=str)
def test_relu_gradients(args):
    check_layer_gradients(ReLU(*args), randn((2, 3, 7), seed=3) * 4)


def test_relu_by_hand():
    x = np.array([[-2.0, 0.0, 0.5, 1.0, 3.0, 10.0]])
    np.testing.assert_array_equal(ReLU()(x), [[0, 0, 0.5, 1, 3, 10]])
    np.testing.assert_array_equal(ReLU(6)(x), [[0, 0, 0.5, 1, 3, 6]])
    np.testing.assert_array_equal(ReLU(negative_slope=0.5)(x), [[-1, 0, 0.5, 1, 3, 10]])
    np.testing.assert_array_equal(ReLU(4, 0.5, 1.0)(x), [[-1.5, -0.5, -0.25, 0, 3, 4]])


@pytest.mark.parametrize("make, bad", [
    (lambda: ReLU(-1.0), "max_value=-1.0"),
    (lambda: ReLU("6"), "max_value='6'"),
    (lambda: ReLU(negative_slope=-0.1), "negative_slope=-0.1"),
    (lambda: ReLU(negative_slope=None), "negative_slope=None"),
    (lambda: ReLU(threshold=-1), "threshold=-1"),
    (lambda: ReLU(threshold=float("nan")), "threshold=nan"),
    (lambda: ReLU(max_value=True), "max_value=True"),
])
def test_bad_arguments_name_the_layer(make, bad):
    with pytest.raises(ValueError, match="^ReLU: ") as info:
        make()
    assert bad in str(info.value)


def test_relu_config_round_trip():
    layer = ReLU(6, negative_slope=0.1, threshold=0.5, name="r6")
    config = layer.get_config()
    assert config == {"name": "r6", "max_value": 6.0, "negative_slope": 0.1, "threshold": 0.5}
    assert ReLU.from_config(config).get_config() == config
    assert ReLU().get_config()["max_value"] is None


# ----- the activation names --------------------------------------------------------------------
NAMED = {"relu6": TF.relu6, "swish": TF.silu, "silu": TF.silu}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_activations_in_conv_and_dense_match_torch(name):
    cnnumpy.set_seed(0)
    x = randn((2, 5, 5, 3), seed=4) * 4
    conv = layers.Conv2D(4, 3, padding="same", activation=name, dtype="float64")
    z = layers.Conv2D.from_config({**conv.get_config(), "activation": None})
    y = conv(x)
    z.build(x.shape[1:])
    z.set_weights(conv.get_weights())
    dy = randn(y.shape, seed=5)
    dx = conv.backward(dy)
    zt = torch.from_numpy(z(x)).requires_grad_(True)
    yt = NAMED[name](zt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, z.backward(zt.grad.numpy()), rtol=0, atol=1e-10)
    check_layer_gradients(layers.Dense(3, activation=name), randn((2, 4), seed=6) * 4)


def test_relu6_equals_the_relu_layer_with_max_value_6():
    x = randn((4, 9), seed=7) * 5
    dy = randn((4, 9), seed=8)
    act, layer = layers.Activation("relu6"), ReLU(6.0)
    np.testing.assert_array_equal(act(x), layer(x))
    np.testing.assert_array_equal(act.backward(dy), layer.backward(dy))


def test_swish_is_finite_far_out():
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    layer = layers.Activation("swish")
    with np.errstate(all="raise"):
        y = layer(x)
        dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(y, [[0, -50 * np.exp(-50), 0, 50, 1e4]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(dx, [[0, 0, 0.5, 1, 1]], atol=1e-18)
