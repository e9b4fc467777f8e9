"""cnnumpy.testing.check_layer: every built-in layer passes; planted mistakes are reported by
name and by how much."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layers.test_contract import CASES

from cnnumpy import backend
from cnnumpy.layers import LAYERS, Layer
from cnnumpy.testing import LayerCheckError, check_layer, numerical_grad

SHAPE = (3, 4, 2)


class Scale(Layer):
    """y = x * gamma + beta + shift per channel: a correct user layer, the base of planted ones."""

    def __init__(self, init: float = 1.5, shift: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.init = float(init)
        self.shift = float(shift)

    def _create_weights(self, input_shape):
        c = input_shape[-1]
        self.params = {"gamma": np.full(c, self.init, self.dtype) + np.arange(c, dtype=self.dtype),
                       "beta": np.zeros(c, self.dtype)}

    def call(self, x, training):
        self.x = x
        return x * self.params["gamma"] + self.params["beta"] + self.shift

    def call_backward(self, dy):
        axes = tuple(range(dy.ndim - 1))
        self.grads = {"gamma": (dy * self.x).sum(axes), "beta": dy.sum(axes)}
        return dy * self.params["gamma"]

    def get_config(self):
        return {**super().get_config(), "init": self.init, "shift": self.shift}


class WrongInputGradient(Scale):
    def call_backward(self, dy):
        return super().call_backward(dy) + 0.25


class WrongBetaGradient(Scale):
    def call_backward(self, dy):
        dx = super().call_backward(dy)
        self.grads["beta"] = self.grads["beta"] - 0.125
        return dx


class ForgetsShift(Scale):
    def get_config(self):
        return {**Layer.get_config(self), "init": self.init}  # ``shift`` is lost


class WrongOutputShape(Scale):
    def _output_shape(self, input_shape):
        return (input_shape[0] + 1, *input_shape[1:])  # forward keeps the height


def torch_scale(x, gamma, beta):
    return x * gamma + beta


def test_a_correct_user_layer_passes_everything_and_is_left_as_it_was():
    layer = Scale()
    state = backend.rng_state()
    report = check_layer(layer, SHAPE, torch_fn=torch_scale)
    report.assert_ok()
    names = [c.name for c in report.checks]
    assert names == ["output shape", "config round trip", "file round trip", "input gradient",
                     "gradient of 'gamma'", "gradient of 'beta'", "torch output",
                     "torch gradient of input", "torch gradient of 'gamma'",
                     "torch gradient of 'beta'"]
    assert report["input gradient"].error < 1e-7
    assert not layer.built and "Scale" not in LAYERS  # registered only while loading the file
    assert backend.rng_state() == state
    assert "all 10 checks passed" in str(report)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_built_in_layer_passes(name):
    factory, shape = CASES[name]
    report = check_layer(factory(), shape)
    assert report.ok, str(report)
    assert len(report.checks) >= 4


def test_a_wrong_input_gradient_is_reported_with_its_size():
    report = check_layer(WrongInputGradient(), SHAPE)
    assert [c.name for c in report.failures] == ["input gradient"]
    assert report["input gradient"].error == pytest.approx(0.25, abs=1e-6)
    assert "FAIL  input gradient" in str(report)
    assert "48 of 48 elements off" in str(report)
    with pytest.raises(LayerCheckError, match="1 of 6 checks failed"):
        report.assert_ok()


def test_a_wrong_weight_gradient_is_reported_with_its_name_and_size():
    report = check_layer(WrongBetaGradient(), SHAPE)
    assert [c.name for c in report.failures] == ["gradient of 'beta'"]
    assert report["gradient of 'beta'"].error == pytest.approx(0.125, abs=1e-6)
    assert report["gradient of 'gamma'"].ok


def test_a_config_that_does_not_round_trip_is_reported():
    report = check_layer(ForgetsShift(shift=0.375), SHAPE)
    assert [c.name for c in report.failures] == ["config round trip", "file round trip"]
    detail = report["config round trip"].detail
    assert "max abs difference 0.38" in detail and "does get_config() miss an argument" in detail
    assert "max abs difference 0.38" in report["file round trip"].detail


def test_a_config_that_is_not_json_is_reported():
    class Tuple(Scale):
        def get_config(self):
            return {**super().get_config(), "init": np.float32(self.init)}

    report = check_layer(Tuple(), SHAPE, checks=["config"])
    assert not report.ok and "not JSON" in report["config round trip"].detail


def test_a_wrong_output_shape_is_reported_with_both_shapes():
    report = check_layer(WrongOutputShape(), SHAPE)
    check = report["output shape"]
    assert not check.ok
    assert check.detail == "forward gave (2, 3, 4, 2), compute_output_shape says (2, 4, 4, 2)"


def test_torch_parity_reports_a_disagreement():
    report = check_layer(Scale(), SHAPE, checks=["torch"],
                         torch_fn=lambda x, gamma, beta: x * gamma * 1.01 + beta)
    assert [c.name for c in report.failures] == ["torch output", "torch gradient of input",
                                                 "torch gradient of 'gamma'"]
    x = np.random.default_rng(0).standard_normal((2, *SHAPE))
    gamma = np.array([1.5, 2.5])
    assert report["torch output"].error == pytest.approx(np.max(np.abs(x * gamma * 0.01)))
    assert isinstance(torch.__version__, str)


def test_a_layer_that_raises_is_a_failed_check_not_a_crash():
    class Broken(Scale):
        def call_backward(self, dy):
            raise RuntimeError("not written yet")

    report = check_layer(Broken(), SHAPE, checks=["shape", "gradients"])
    assert [c.detail for c in report.failures] == ["raised RuntimeError: not written yet"] * 2


def test_large_arrays_are_sampled():
    report = check_layer(WrongInputGradient(), (10, 10, 2), checks=["gradients"],
                         max_elements=50)
    assert "[50 of 400 elements sampled]" in report["input gradient"].detail
    assert report["input gradient"].error == pytest.approx(0.25, abs=1e-6)


def test_bad_arguments():
    with pytest.raises(TypeError, match="expected a cnnumpy.layers.Layer"):
        check_layer(lambda x: x, SHAPE)
    with pytest.raises(ValueError, match="unknown checks"):
        check_layer(Scale(), SHAPE, checks=["grads"])
    built = Scale()
    built.build((5, 5, 2))
    with pytest.raises(ValueError, match="built for input"):
        check_layer(built, SHAPE)


def test_numerical_grad_of_a_known_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(numerical_grad(lambda: float(np.sum(x ** 3)), x), 3 * x ** 2,
                               rtol=1e-6)
