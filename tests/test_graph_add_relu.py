"""A residual ``Add`` and the ReLU after it run as one pass (forward and backward, the
fan-out's gradients summed in the same pass), and a training step drops each layer's forward
caches once its backward ran; results equal the unfused nodes run one by one."""

from __future__ import annotations

import numpy as np
import pytest
from graph_models import randomize_batch_norms, resnet_block

import cnnumpy
from cnnumpy import graph_run, layers, shards
from cnnumpy.functional.fast import add_relu, compiled


def blocks(shape=(8, 8, 3)):
    """A stem conv-BN-ReLU whose output feeds a residual block (conv-BN-ReLU-conv-BN, Add,
    ReLU), whose ReLU feeds a second block with a 1x1 convolution shortcut, then the head:
    the last Add's ReLU, pooling and the softmax output in one chain."""
    cnnumpy.set_seed(3)
    x = cnnumpy.Input(shape, dtype="float64", name="in")
    h = layers.Conv2D(4, 3, padding="same", name="stem")(x)
    h = layers.Activation("relu", name="stem_relu")(layers.BatchNormalization(name="bn0")(h))
    for b, short in enumerate((False, True)):
        r = layers.Conv2D(4, 3, padding="same", name=f"c{b}a")(h)
        r = layers.Activation("relu", name=f"r{b}")(layers.BatchNormalization(name=f"n{b}a")(r))
        r = layers.BatchNormalization(name=f"n{b}b")(
            layers.Conv2D(4, 3, padding="same", name=f"c{b}b")(r))
        s = layers.Conv2D(4, 1, name=f"s{b}")(h) if short else h
        h = layers.Activation("relu", name=f"out{b}")(layers.Add(name=f"add{b}")([r, s]))
    h = layers.GlobalAvgPool2D(name="gap")(h)
    return x, layers.Dense(3, activation="softmax", name="head")(h)


def _data(n=6, shape=(8, 8, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, 3, n)


def _step(model, x, y):
    """Predictions, loss and weight gradients of one training forward and backward."""
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[])
    y_pred, value, grad = model._forward_loss(x, y, True)
    fused = set(model._passes[0].fused)
    model._backward(grad)
    return y_pred, value, [g.copy() for g in model.trainable_weights()[1]], fused


def test_add_and_its_relu_are_one_step():
    model = cnnumpy.Model(*blocks())
    steps = [[n.layer.name for n in step] for step in model._steps]
    assert ["add0", "out0"] in steps and ["add1", "out1", "gap", "head"] in steps


@pytest.mark.parametrize("switch", ["FUSE_ADD_RELU", "REWRITE_CHAINS"])
def test_fused_add_relu_equals_the_unfused_nodes(monkeypatch, switch):
    x, y = _data()
    model = cnnumpy.Model(*blocks())
    model.forward(x[:1])  # builds every layer: the first training forward then fuses
    got = _step(model, x, y)
    assert len(got[3]) == 2, "no Add ran with its ReLU"
    monkeypatch.setattr(graph_run, switch, False)
    plain = cnnumpy.Model(model.input, model.output)
    want = _step(plain, x, y)
    assert not want[3]
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13, atol=1e-14)
    assert got[1] == pytest.approx(want[1], rel=1e-13)
    for a, b in zip(got[2], want[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    monkeypatch.setattr(graph_run, switch, True)
    fused = model.predict(x)
    monkeypatch.setattr(graph_run, switch, False)
    np.testing.assert_allclose(fused, plain.predict(x), rtol=1e-13, atol=1e-14)


def test_fused_add_relu_in_batch_slices_equals_the_whole_batch(monkeypatch):
    x, _ = _data(n=8)
    model = cnnumpy.Model(*blocks())
    want = model.predict(x)
    monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 2)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-13, atol=1e-14)


def test_public_backward_after_the_fused_forward_equals_the_unfused(monkeypatch):
    x, _ = _data()
    model = cnnumpy.Model(*blocks())
    model.forward(x[:1])
    dy = np.random.default_rng(2).standard_normal((len(x), 3))
    model.forward(x, training=True)
    assert model._passes[0].fused
    dx = model.backward(dy)
    monkeypatch.setattr(graph_run, "FUSE_ADD_RELU", False)
    model.forward(x, training=True)
    np.testing.assert_allclose(dx, model.backward(dy), rtol=1e-12, atol=1e-13)


def test_a_training_step_drops_the_forward_caches():
    x, y = _data()
    model = cnnumpy.Model(*blocks())
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[])
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    held = [(layer.name, name) for layer in model.layers
            for name in ("_cache", "_act_cache", "_relu_input", "_relu_output", "_x")
            if getattr(layer, name, None) is not None]
    assert held == []
    with pytest.raises(ValueError, match="before"):
        model.get_layer("add0").backward_relu([np.zeros((6, 8, 8, 4))])


@pytest.mark.parametrize("use_compiled", [True, False])
def test_add_relu_kernels_equal_numpy(monkeypatch, use_compiled):
    monkeypatch.setattr(compiled, "ENABLED", use_compiled and compiled.AVAILABLE)
    monkeypatch.setattr(add_relu, "PARALLEL_MIN", 16)  # several threads' slices
    rng = np.random.default_rng(5)
    a, b, g0, g1 = (rng.standard_normal((4, 5, 6)).astype(np.float32) for _ in range(4))
    a[0, 0, 0], b[1, 0, 0], g1[2, 2, 2] = np.nan, -np.inf, np.nan
    want = np.maximum(a + b, 0)
    y = add_relu.forward([a, b])
    np.testing.assert_array_equal(y, want)
    three = add_relu.forward([a, b, g0])
    np.testing.assert_array_equal(three, np.maximum(a + b + g0, 0))
    outs = add_relu.backward([g0, g1], y, 2)
    for out in outs:
        np.testing.assert_array_equal(out, (g0 + g1) * (y > 0))
    assert not np.shares_memory(outs[0], outs[1])
    np.testing.assert_array_equal(add_relu.backward([g0], y, 1)[0], g0 * (y > 0))
    into = a.copy()
    assert add_relu.forward([into, b], out=into) is into
    np.testing.assert_array_equal(into, want)


@pytest.mark.parametrize("slices", [False, True])
def test_a_sequential_training_step_drops_the_forward_caches(monkeypatch, slices):
    if slices:
        monkeypatch.setattr(shards, "MIN_IMAGES_PER_THREAD", 2)
    cnnumpy.set_seed(1)
    model = cnnumpy.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 3)),
        layers.MaxPool2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[])
    x, y = _data(n=8)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    assert model._shards is None and not model._passes._fused
    held = [(layer.name, name) for layer in model.layers
            for name in ("_cache", "_act_cache", "_x") if getattr(layer, name, None) is not None]
    assert held == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_compiled", [True, False])
def test_a_last_batch_norm_with_the_add_and_relu_after_it_equals_them_apart(
        dtype, use_compiled, monkeypatch):
    """In each block, the batch norm that runs last of the two the Add reads computes the
    block's sum and ReLU in its own pass: the identity block's branch (its shortcut, the
    stem's output, is ready first), the projection block's shortcut (its branch ran first).
    Backward, each goes back through the ReLU and the sum in its own first pass (the block's
    output has two consumers in the first block, one in the second). Training gives the
    same bits as with the fusion off, through the compiled kernels; without them the batch
    norms decline and nothing is fused."""
    monkeypatch.setattr(compiled, "ENABLED", use_compiled and compiled.AVAILABLE)
    x, y = _data(n=6)
    x = x.astype(dtype)
    model = resnet_block(dtype)
    randomize_batch_norms(model)
    made = []
    fused_forward = layers.BatchNormalization.forward_add_relu

    def spy(self, h, residual):
        out = fused_forward(self, h, residual)
        made.append((self.name, out is not None))
        return out

    back = []
    fused_backward = layers.BatchNormalization.backward_add_relu

    def spy_back(self, grads, out):
        result = fused_backward(self, grads, out)
        back.append((self.name, len(grads), result is not None))
        return result

    monkeypatch.setattr(layers.BatchNormalization, "forward_add_relu", spy)
    monkeypatch.setattr(layers.BatchNormalization, "backward_add_relu", spy_back)
    got = _step(model, x, y)
    assert made == [("b0_bn2", use_compiled), ("b1_down_bn", use_compiled)]
    assert back == ([("b1_down_bn", 1, True), ("b0_bn2", 2, True)] if use_compiled else [])
    monkeypatch.setattr(graph_run, "FUSE_BN_ADD_RELU", False)
    want = _step(cnnumpy.Model(model.input, model.output), x, y)
    assert len(made) == 2 and got[3] == want[3]
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]
    for a, b in zip(got[2], want[2], strict=True):
        np.testing.assert_array_equal(a, b)
