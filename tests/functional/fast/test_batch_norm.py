"""Batch normalization's fast paths (cnnumpy.functional.fast.batch_norm): the compiled
training passes, with and without a fused ReLU/ReLU6, equal the reference layers in float64
and PyTorch; graph models fuse BN+ReLU in training and fold BN into the convolution in
predict, with the same results as running the layers one by one."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import backend, passes
from cnnumpy import layers as L
from cnnumpy.functional.fast import batch_norm, compiled

pytest.importorskip("numba")
CLOSE = dict(rtol=1e-10, atol=1e-12)


def _data(shape=(6, 5, 4, 7), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + rng.uniform(-3, 3, shape[-1])  # means away from 0
    return x, rng.standard_normal(shape)


def _bn(seed=1):
    bn = L.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype="float64")
    bn.build((5, 4, 7))
    rng = np.random.default_rng(seed)
    bn.params["gamma"][...] = rng.uniform(0.5, 1.5, 7)
    bn.params["beta"][...] = rng.uniform(-1, 1, 7)
    return bn


def _reference(x, dy, top, monkeypatch):
    """BN then ReLU (top: None for no ReLU, inf for ReLU, 6 for ReLU6) with NumPy only."""
    monkeypatch.setattr(compiled, "ENABLED", False)
    bn = _bn()
    y = bn.forward(x, training=True)
    relu = None if top is None else L.ReLU(None if top == np.inf else top, dtype="float64")
    if relu is not None:
        y = relu.forward(y)
        dy = relu.backward(dy)
    dx = bn.backward(dy)
    monkeypatch.setattr(compiled, "ENABLED", True)
    return y, dx, bn


@pytest.mark.parametrize("wide", [128, 8])  # 7 channels: 15 rows side by side (of 120), or 1
@pytest.mark.parametrize("parallel_min", [2**60, 1])  # 1: one slice of rows per thread
@pytest.mark.parametrize("top", [None, np.inf, 6.0])
def test_compiled_training_equals_reference(top, parallel_min, wide, monkeypatch):
    x, dy = _data()
    y_ref, dx_ref, ref = _reference(x, dy, top, monkeypatch)
    monkeypatch.setattr(batch_norm, "PARALLEL_MIN", parallel_min)
    monkeypatch.setattr(batch_norm, "WIDE", wide)
    monkeypatch.setattr(backend, "_num_threads", 3)  # uneven slices
    bn = _bn()
    if top is None:
        y = bn.forward(x, training=True)
    else:
        y = bn.forward_relu(x, True, None if top == np.inf else top)
    assert bn._cache[0] is not None and bn._cache[0].__name__.endswith("batch_norm")
    np.testing.assert_allclose(y, y_ref, **CLOSE)
    np.testing.assert_allclose(bn.backward(dy), dx_ref, **CLOSE)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(bn.grads[key], ref.grads[key], **CLOSE)
    for key in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(bn.state[key], ref.state[key], **CLOSE)


def test_fused_bn_relu6_equals_pytorch():
    torch = pytest.importorskip("torch")
    x, dy = _data(seed=3)
    bn = _bn()
    y = bn.forward_relu(x, True, 6.0)
    dx = bn.backward(dy)
    tbn = torch.nn.BatchNorm2d(7, eps=1e-3, momentum=0.1).double()
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(bn.params["gamma"]))
        tbn.bias.copy_(torch.tensor(bn.params["beta"]))
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    yt = torch.nn.functional.relu6(tbn(xt))
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **CLOSE)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **CLOSE)
    np.testing.assert_allclose(bn.grads["gamma"], tbn.weight.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(bn.state["moving_variance"], tbn.running_var.numpy(), **CLOSE)


def _model():
    """conv -> BN -> ReLU, depthwise -> BN -> ReLU6, conv -> BN (+ input) -> Dense."""
    old = cnnumpy.floatx()
    cnnumpy.set_floatx("float64")
    try:
        x = inputs = cnnumpy.Input((6, 6, 4))
        h = L.Conv2D(4, 3, padding="same", use_bias=False)(x)
        h = L.Activation("relu")(L.BatchNormalization(epsilon=1e-3)(h))
        h = L.DepthwiseConv2D(3, padding="same", use_bias=True)(h)
        h = L.ReLU(6.0)(L.BatchNormalization()(h))
        h = L.BatchNormalization()(L.Conv2D(4, 1, use_bias=True)(h))
        h = L.GlobalAveragePooling2D()(L.Add()([h, x]))
        model = cnnumpy.Model(inputs, L.Dense(3)(h))
    finally:
        cnnumpy.set_floatx(old)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for key, value in {**layer.params, **layer.state}.items():
            value[...] = rng.uniform(0.5, 1.5, value.shape) if key in (
                "gamma", "moving_variance") else rng.standard_normal(value.shape) * 0.5
    return model


def _no_calls(monkeypatch, cls):
    def fail(self, *args):
        raise AssertionError(f"{cls.__name__}.call ran")
    monkeypatch.setattr(cls, "call", fail)


def test_predict_folds_batch_norm_into_convolutions(monkeypatch):
    model = _model()
    x = np.random.default_rng(1).standard_normal((5, 6, 6, 4))
    expected = model.forward(x, training=False)  # layer by layer, no folding
    _no_calls(monkeypatch, L.BatchNormalization)  # every BN follows a convolution
    np.testing.assert_allclose(model.predict(x, batch_size=5), expected, **CLOSE)


def test_training_fuses_bn_and_relu(monkeypatch):
    model = _model()
    x = np.random.default_rng(2).standard_normal((5, 6, 6, 4))
    dy = np.random.default_rng(3).standard_normal((5, 3))
    runs = []
    for fuse in (False, True):
        monkeypatch.setattr(passes, "FUSE_BN_RELU", fuse)
        if fuse:  # the ReLU layers never run on their own
            _no_calls(monkeypatch, L.ReLU)
            _no_calls(monkeypatch, L.Activation)
        y = model.forward(x, training=True)
        dx = model.backward(dy)
        runs.append((y, dx, {(layer.name, k): v.copy() for layer in model.layers
                             for k, v in layer.grads.items() if v is not None}))
    (y0, dx0, g0), (y1, dx1, g1) = runs
    np.testing.assert_allclose(y1, y0, **CLOSE)
    np.testing.assert_allclose(dx1, dx0, **CLOSE)
    assert g0.keys() == g1.keys() and len(g0) == 13
    for key in g0:
        np.testing.assert_allclose(g1[key], g0[key], **CLOSE, err_msg=str(key))


def test_predict_applies_the_relu_after_a_folded_batch_norm_in_place(monkeypatch):
    model = _model()
    x = np.random.default_rng(4).standard_normal((5, 6, 6, 4)) * 3  # some values above 6
    expected = model.forward(x, training=False)  # layer by layer, no folding
    _no_calls(monkeypatch, L.ReLU)  # each ReLU follows a BN folded into its convolution
    _no_calls(monkeypatch, L.Activation)
    np.testing.assert_allclose(model.predict(x, batch_size=5), expected, **CLOSE)


@pytest.mark.parametrize(("rows", "channels", "m"), [(120, 7, 15), (64, 8, 16), (13, 16, 1),
                                                      (64, 17, 1), (3, 8, 3)])
def test_narrow_rows_are_widened_by_a_divisor(rows, channels, m):
    x = np.zeros((rows, channels), np.float32)
    xw, got = batch_norm._widened(x)
    assert got == m and xw.shape == (rows // m, m * channels) and xw.base is x


@pytest.mark.parametrize("parallel_min", [2**60, 1])
def test_one_pass_statistics_keep_their_digits_far_from_zero(parallel_min, monkeypatch):
    monkeypatch.setattr(batch_norm, "PARALLEL_MIN", parallel_min)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3000, 3)) * [0.01, 1, 100] + [1e4, -3e3, 0]).astype(np.float32)
    x[0, 2] = 1e5  # the first row, by which the sums are shifted, an outlier
    _, mean, var, _, _ = batch_norm.train_forward(x, np.ones(3, np.float32),
                                                  np.zeros(3, np.float32), 1e-3)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(mean, exact.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, exact.var(axis=0), rtol=1e-9)


def _train_with_threads(monkeypatch, run_together):
    """The fused BN+ReLU layer's forward and backward on 2 threads (every array split), with
    ``backend.run_together`` replaced by ``run_together`` and ``parallel_map`` forbidden."""
    x, dy = _data()
    y_ref, dx_ref, ref = _reference(x, dy, np.inf, monkeypatch)
    monkeypatch.setattr(batch_norm, "PARALLEL_MIN", 1)
    monkeypatch.setattr(backend, "_num_threads", 2)
    monkeypatch.setattr(backend, "run_together", run_together)
    monkeypatch.setattr(backend, "parallel_map", lambda fn, items: pytest.fail("parallel_map"))
    bn = _bn()
    y = bn.forward_relu(x, True, None)
    np.testing.assert_allclose(y, y_ref, **CLOSE)
    np.testing.assert_allclose(bn.backward(dy), dx_ref, **CLOSE)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(bn.grads[key], ref.grads[key], **CLOSE)


def test_each_training_pass_is_one_call_on_the_threads(monkeypatch):
    """The statistics and the normalization (the backward's sums and dx) run as one call of
    run_together, the parts meeting in between: one hand-over to the threads per pass."""
    calls = []
    run_together = backend.run_together
    _train_with_threads(monkeypatch, lambda fn, count: calls.append(count)
                        or run_together(fn, count))
    assert calls == [2, 2]


@pytest.mark.parametrize("outcome", [None, [False, False], [True, False]])
def test_parts_that_could_not_run_together_are_redone_in_one_part(outcome, monkeypatch):
    """run_together refused (None: no threads free) or a part stopped waiting without an
    error (another caller's task failed meanwhile): nothing here ran, so the pass is done
    again in one part, with the same results."""
    _train_with_threads(monkeypatch, lambda fn, count: outcome)
