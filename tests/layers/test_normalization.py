"""BatchNormalization: gradients in both modes, PyTorch parity, moving statistics, errors."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer_gradients, nchw_to_nhwc, nhwc_to_nchw

from cnnumpy.layers.normalization import BatchNormalization

torch = pytest.importorskip("torch")

TOL = {np.float64: 1e-10, np.float32: 1e-4}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def randn(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def randomized(layer, channels, seed, dtype=np.float64):
    """Build ``layer`` and give it random gamma, beta and moving statistics."""
    g = np.random.default_rng(seed)
    layer.set_weights({
        "gamma": g.uniform(0.5, 2, channels), "beta": g.standard_normal(channels),
        "moving_mean": g.standard_normal(channels),
        "moving_variance": g.uniform(0.5, 2, channels)})
    return layer


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 2), (1, 3, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_gradients(shape, training):
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3, dtype="float64")
    layer.build(shape[1:])
    randomized(layer, shape[-1], seed=1)
    check_layer_gradients(layer, randn(shape, seed=2) * 2 + 1, training=training)


def torch_bn(x_nhwc, layer, momentum, training):
    """The same computation with torch.nn.BatchNorm1d/2d (channels first)."""
    dtype = TORCH_DTYPE[x_nhwc.dtype.type]
    channels = x_nhwc.shape[-1]
    cls = torch.nn.BatchNorm2d if x_nhwc.ndim == 4 else torch.nn.BatchNorm1d
    bn = cls(channels, eps=layer.epsilon, momentum=1 - momentum, dtype=dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(layer.params["gamma"]))
        bn.bias.copy_(torch.from_numpy(layer.params["beta"]))
        bn.running_mean.copy_(torch.from_numpy(layer.state["moving_mean"]))
        bn.running_var.copy_(torch.from_numpy(layer.state["moving_variance"]))
    bn.train(training)
    x = nhwc_to_nchw(x_nhwc) if x_nhwc.ndim == 4 else x_nhwc
    return bn, torch.from_numpy(x).requires_grad_(True)


def to_nhwc(t):
    a = t.detach().numpy()
    return nchw_to_nhwc(a) if a.ndim == 4 else a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
def test_matches_torch(training, dtype):
    g = np.random.default_rng(3)
    tol = TOL[dtype]
    for trial in range(8):
        channels = int(g.integers(1, 5))
        if trial % 2:
            shape = (int(g.integers(2, 5)), int(g.integers(1, 6)), int(g.integers(1, 6)), channels)
        else:
            shape = (int(g.integers(2, 9)), channels)
        momentum = float(g.choice([0.0, 0.5, 0.9, 0.99, 1.0]))
        layer = BatchNormalization(momentum=momentum, epsilon=float(g.choice([1e-3, 1e-5])),
                                   dtype=dtype.__name__)
        layer.build(shape[1:])
        randomized(layer, channels, seed=trial)
        x = (g.standard_normal(shape) * 3 + 2).astype(dtype)
        bn, xt = torch_bn(x, layer, momentum, training)

        y = layer(x, training=training)
        dy = g.standard_normal(shape).astype(dtype)
        dx = layer.backward(dy)
        yt = bn(xt)
        yt.backward(torch.from_numpy(nhwc_to_nchw(dy) if dy.ndim == 4 else dy))

        where = f"shape={shape} momentum={momentum} training={training}"
        assert y.dtype == dtype and dx.dtype == dtype, where
        np.testing.assert_allclose(y, to_nhwc(yt), atol=tol, err_msg=where)
        np.testing.assert_allclose(dx, to_nhwc(xt.grad), atol=tol, err_msg=where)
        np.testing.assert_allclose(layer.grads["gamma"], bn.weight.grad.numpy(), atol=tol,
                                   rtol=tol, err_msg=where)
        np.testing.assert_allclose(layer.grads["beta"], bn.bias.grad.numpy(), atol=tol,
                                   rtol=tol, err_msg=where)
        np.testing.assert_allclose(layer.state["moving_mean"], bn.running_mean.numpy(),
                                   atol=tol, err_msg=where)
        np.testing.assert_allclose(layer.state["moving_variance"], bn.running_var.numpy(),
                                   atol=tol, err_msg=where)
        assert layer.state["moving_mean"].dtype == dtype


def test_training_uses_batch_statistics_and_updates_moving_ones():
    x = randn((50, 3), seed=4) * np.array([1.0, 2.0, 3.0]) + np.array([-1.0, 0.0, 5.0])
    layer = BatchNormalization(momentum=0.8, epsilon=1e-5)
    y = layer(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5))
    np.testing.assert_allclose(layer.state["moving_mean"], 0.2 * x.mean(axis=0))
    np.testing.assert_allclose(layer.state["moving_variance"], 0.8 + 0.2 * x.var(axis=0, ddof=1))
    assert layer.grads == {"gamma": None, "beta": None}


def test_inference_uses_moving_statistics_and_is_affine():
    layer = BatchNormalization(epsilon=1e-3, dtype="float64")
    layer.build((2, 2, 3))
    randomized(layer, 3, seed=5)
    before = {k: v.copy() for k, v in layer.state.items()}
    x = randn((4, 2, 2, 3), seed=6)
    y = layer(x)
    scale = layer.params["gamma"] / np.sqrt(layer.state["moving_variance"] + 1e-3)
    np.testing.assert_allclose(y, (x - layer.state["moving_mean"]) * scale
                               + layer.params["beta"], atol=1e-12)
    dy = randn(x.shape, seed=7)
    np.testing.assert_allclose(layer.backward(dy), dy * scale, atol=1e-12)
    for k, v in before.items():
        np.testing.assert_array_equal(layer.state[k], v)


def test_weights_shapes_dtypes_and_counts():
    layer = BatchNormalization()
    y = layer(np.ones((2, 3, 3, 4), np.float32))
    assert y.dtype == np.float32
    assert {k: v.shape for k, v in layer.params.items()} == {"gamma": (4,), "beta": (4,)}
    assert sorted(layer.state) == ["moving_mean", "moving_variance"]
    np.testing.assert_array_equal(layer.params["gamma"], 1)
    np.testing.assert_array_equal(layer.state["moving_variance"], 1)
    assert layer.count_params() == 16 and layer.count_trainable_params() == 8
    assert layer.compute_output_shape((None, 3, 3, 4)) == (None, 3, 3, 4)


def test_backward_never_changes_weights():
    layer = BatchNormalization()
    layer(randn((5, 2), seed=8), training=True)
    weights = {k: v.copy() for k, v in layer.get_weights().items()}
    layer.backward(randn((5, 2), seed=9))
    for k, v in weights.items():
        np.testing.assert_array_equal(layer.get_weights()[k], v)


@pytest.mark.parametrize("kwargs, bad", [
    ({"momentum": 1.5}, "momentum=1.5"), ({"momentum": -0.1}, "momentum=-0.1"),
    ({"momentum": "0.9"}, "momentum='0.9'"), ({"epsilon": 0}, "epsilon=0"),
    ({"epsilon": -1e-3}, "epsilon=-0.001"), ({"epsilon": None}, "epsilon=None"),
])
def test_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match="BatchNormalization") as info:
        BatchNormalization(**kwargs)
    assert bad in str(info.value)


def test_wrong_input_shape_names_the_layer():
    layer = BatchNormalization(name="bn")
    layer(np.ones((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="BatchNormalization 'bn'"):
        layer(np.ones((2, 4, 4, 2)))
    with pytest.raises(ValueError, match="BatchNormalization 'bn'"):
        layer(np.ones((2, 3)))
    with pytest.raises(ValueError, match="bn2"):
        BatchNormalization(name="bn2")(np.ones(3))


@pytest.mark.parametrize("layer", [
    BatchNormalization(), BatchNormalization(0.9, 1e-5, input_shape=(4, 4, 3), name="bn",
                                             dtype="float64")])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    assert {"momentum", "epsilon"} <= set(config)
