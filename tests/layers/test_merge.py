"""Merge layers: finite differences, PyTorch parity, shape errors, config and gradients that
do not alias one another."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ATOL, RTOL, numerical_grad

from cnnumpy import layers
from cnnumpy.layers.merge import MERGE_LAYERS

torch = pytest.importorskip("torch")


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# (factory, per-sample input shapes)
CASES = {
    "add2": (layers.Add, [(3, 4, 2)] * 2),
    "add3": (layers.Add, [(3, 4, 2)] * 3),
    "subtract": (layers.Subtract, [(5, 2)] * 2),
    "multiply3": (layers.Multiply, [(2, 3, 2)] * 3),
    "average3": (layers.Average, [(4, 3)] * 3),
    "concatenate_channels": (layers.Concatenate, [(3, 2, 1), (3, 2, 4), (3, 2, 2)]),
    "concatenate_axis1": (lambda: layers.Concatenate(axis=1), [(2, 3, 2), (4, 3, 2)]),
    "concatenate_axis_minus2": (lambda: layers.Concatenate(axis=-2), [(2, 1, 2), (2, 3, 2)]),
}


def torch_merge(name, ts):
    if name.startswith("add"):
        return sum(ts[1:], ts[0])
    if name == "subtract":
        return ts[0] - ts[1]
    if name.startswith("multiply"):
        out = ts[0]
        for t in ts[1:]:
            out = out * t
        return out
    if name.startswith("average"):
        return sum(ts[1:], ts[0]) / len(ts)
    axis = {"concatenate_channels": -1, "concatenate_axis1": 1, "concatenate_axis_minus2": -2}
    return torch.cat(ts, dim=axis[name])


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_finite_differences(name):
    factory, shapes = CASES[name]
    layer = factory()
    layer.dtype = np.dtype(np.float64)
    xs = [randn(2, *s, seed=i) for i, s in enumerate(shapes)]
    y = layer.forward(xs)
    assert y.shape == (2, *layer.compute_output_shape(shapes))
    r = randn(*y.shape, seed=99)
    dxs = layer.backward(r.copy())
    assert len(dxs) == len(xs)
    for x, dx in zip(xs, dxs, strict=True):
        expected = numerical_grad(lambda: float(np.sum(layer.forward(xs) * r)), x)
        np.testing.assert_allclose(dx, expected, atol=ATOL, rtol=RTOL, err_msg=name)


@pytest.mark.parametrize("name", CASES)
def test_matches_pytorch_float64(name):
    factory, shapes = CASES[name]
    layer = factory()
    xs = [randn(3, *s, seed=i + 10) for i, s in enumerate(shapes)]
    y = layer.forward(xs)
    dy = randn(*y.shape, seed=7)
    dxs = layer.backward(dy)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    yt = torch_merge(name, ts)
    yt.backward(torch.tensor(dy))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    for dx, t in zip(dxs, ts, strict=True):
        np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_input_gradients_are_separate_arrays(name):
    """A branch that changes its gradient in place must not change another branch's."""
    factory, shapes = CASES[name]
    layer = factory()
    y = layer.forward([randn(2, *s, seed=i) for i, s in enumerate(shapes)])
    dy = randn(*y.shape, seed=3)
    dxs = layer.backward(dy)
    for i, a in enumerate(dxs):
        assert not np.shares_memory(a, dy)
        for b in dxs[i + 1:]:
            assert not np.shares_memory(a, b)


@pytest.mark.parametrize("cls", [layers.Add, layers.Subtract, layers.Multiply, layers.Average])
def test_mismatched_shapes_name_them(cls):
    with pytest.raises(ValueError, match=r"\(3, 4, 2\), \(3, 4, 5\)"):
        cls().build([(3, 4, 2), (3, 4, 5)])
    with pytest.raises(ValueError, match=cls.__name__):
        cls().forward([np.zeros((2, 3)), np.zeros((2, 4))])


def test_concatenate_checks_the_other_axes_and_the_axis():
    with pytest.raises(ValueError, match=r"Concatenate.*\(3, 2, 1\), \(4, 2, 1\)"):
        layers.Concatenate().build([(3, 2, 1), (4, 2, 1)])
    with pytest.raises(ValueError, match="axis=0"):
        layers.Concatenate(axis=0)
    with pytest.raises(ValueError, match="out of range"):
        layers.Concatenate(axis=4).build([(3, 2, 1), (3, 2, 1)])


def test_number_of_inputs_is_checked():
    with pytest.raises(ValueError, match="at least 2 inputs, received 1"):
        layers.Add().build([(3,)])
    with pytest.raises(ValueError, match="exactly 2 inputs, received 3"):
        layers.Subtract().build([(3,)] * 3)
    with pytest.raises(ValueError, match="list of inputs"):
        layers.Add().forward(np.zeros((2, 3)))



def test_build_takes_weights_like_any_layer_and_a_merge_has_none():
    layer = layers.Add()
    with pytest.raises(ValueError, match=r"Add 'add.*': weights do not match: unexpected 'k'"):
        layer.build([(3,), (3,)], weights={"k": np.zeros(3)})
    layer.build([(3,), (3,)], weights={})
    assert layer.built and layer.input_shape == [(3,), (3,)] and layer.get_weights() == {}


def test_float32_by_default_and_config_round_trip():
    for name, cls in MERGE_LAYERS.items():
        layer = cls(name=f"m_{name}") if name != "Concatenate" else cls(axis=2, name="cat")
        y = layer.forward([np.ones((2, 3, 3), np.float32), np.ones((2, 3, 3), np.float32)])
        assert y.dtype == np.float32
        clone = cls.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        assert "input_shape" not in layer.get_config()
