"""UpSampling2D, ZeroPadding2D, Cropping2D, Reshape, ReLU and the relu6/swish/silu activations
through ``cnnumpy.torch.to_torch``/``from_torch`` and ``cnnumpy.onnx`` (onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers as L

torch = pytest.importorskip("torch")
from cnnumpy.torch import from_torch, to_torch  # noqa: E402

# (layers, per-sample input shape): each crosses the NHWC/NCHW boundary in its own way.
MODELS = {
    "pad-conv-upsample-crop-relu": (lambda: [
        L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(3, 3, activation="relu6"),
        L.UpSampling2D((2, 1), interpolation="bilinear"), L.Cropping2D(((1, 1), (0, 1))),
        L.ReLU(2.5, negative_slope=0.3, threshold=0.5), L.Conv2D(2, 3, activation="swish"),
        L.UpSampling2D(2), L.Flatten(), L.Dense(3, activation="silu")], (6, 5, 2)),
    "image-to-rows": (lambda: [
        L.Conv2D(4, 3), L.Reshape((8, 8)), L.Dense(3, activation="relu6"), L.Flatten(),
        L.Dense(5)], (6, 6, 2)),
    "flatten-then-image": (lambda: [
        L.Conv2D(2, 1), L.Flatten(), L.Reshape((2, 4, 4)), L.Conv2D(3, 2), L.ReLU(6.0),
        L.Flatten(), L.Dense(2)], (4, 4, 3)),
    "flatten-then-rows": (lambda: [
        L.Conv2D(2, 1), L.Flatten(), L.Reshape((4, 8)), L.Dense(3), L.Flatten(), L.Dense(2)],
        (4, 4, 3)),
    "image-to-image": (lambda: [
        L.Reshape((6, 4, 2)), L.UpSampling2D((1, 3)), L.ReLU(negative_slope=0.2),
        L.ZeroPadding2D(1), L.Conv2D(2, 3), L.ReLU(threshold=0.1), L.GlobalAvgPool2D()],
        (4, 6, 2)),
    "vector-to-image": (lambda: [
        L.Dense(32, activation="swish"), L.Reshape((4, 4, 2)), L.Conv2D(3, 3, padding="same"),
        L.Cropping2D(((0, 1), (1, 0))), L.Reshape((-1,))], (7,)),
}


def build(name, dtype="float32", seed=0):
    cnnumpy.set_seed(seed)
    make, shape = MODELS[name]
    model = cnnumpy.Sequential(make(), dtype=dtype)
    model.build(shape)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # biases away from zero, so that they are exercised
        if "bias" in layer.params:
            layer.set_weights({**layer.get_weights(), "bias": rng.normal(size=layer.params[
                "bias"].shape)})
    return model, shape


def to_nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x)


def from_nchw(y):
    y = y.detach().numpy()
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1)) if y.ndim == 4 else y


@pytest.mark.parametrize("name", sorted(MODELS))
def test_to_torch_matches_predict_in_float64(name):
    model, shape = build(name, "float64")
    x = np.random.default_rng(1).normal(size=(4, *shape)) * 2
    net = to_torch(model)
    with torch.no_grad():
        got = from_nchw(net(to_nchw(x)))
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_from_torch_fills_a_fresh_model(name):
    model, shape = build(name, seed=2)
    fresh, _ = build(name, seed=3)
    from_torch(to_torch(model), fresh)
    for a, b in zip(model.layers, fresh.layers, strict=True):
        for key, value in a.get_weights().items():
            np.testing.assert_array_equal(b.get_weights()[key], value, err_msg=f"{a.label} {key}")
    x = np.random.default_rng(4).normal(size=(3, *shape)).astype(np.float32)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_relu_variants_become_native_torch_modules():
    nn = torch.nn
    model = cnnumpy.Sequential([L.ReLU(), L.ReLU(6), L.ReLU(negative_slope=0.3), L.ReLU(1, 0.1),
                                L.Activation("relu6"), L.Activation("swish")])
    model.build((5,))
    kinds = [type(m) for m in to_torch(model)]
    assert kinds[:3] == [nn.ReLU, nn.ReLU6, nn.LeakyReLU]
    assert kinds[3].__name__ == "KerasReLU" and kinds[4:] == [nn.ReLU6, nn.SiLU]


# ----- ONNX ----------------------------------------------------------------------------------
RELUS = {
    "plain": (L.ReLU, {}, "Relu"),
    "max-value": (L.ReLU, {"max_value": 6.0}, "Clip"),
    "leaky": (L.ReLU, {"negative_slope": 0.2}, "LeakyRelu"),
    "threshold": (L.ReLU, {"threshold": 0.5}, "Where"),
    "all-three": (L.ReLU, {"max_value": 1.5, "negative_slope": 0.1, "threshold": 0.5}, "Where"),
    "relu6": (L.Activation, {"activation": "relu6"}, "Clip"),
    "swish": (L.Activation, {"activation": "swish"}, "Sigmoid"),
    "silu": (L.Activation, {"activation": "silu"}, "Sigmoid"),
}


def run_onnx(model, x, opset=None):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from cnnumpy import onnx as cnnumpy_onnx

    proto = cnnumpy_onnx.to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0], {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_predict(name, opset):
    model, shape = build(name)
    for n in (5, 1):
        x = np.random.default_rng(n).normal(size=(n, *shape)).astype(np.float32) * 2
        got, ops = run_onnx(model, x, opset)
        want = model.predict(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    if name == "pad-conv-upsample-crop-relu":
        assert {"Pad", "Slice", "Resize", "Clip", "Where"} <= ops


@pytest.mark.parametrize("name", sorted(RELUS))
def test_onnx_relus_and_activations(name):
    cls, kwargs, op = RELUS[name]
    model = cnnumpy.Sequential([L.Conv2D(3, 3, padding="same"), cls(**kwargs)])
    model.build((5, 4, 2))
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 2)).astype(np.float32) * 4
    got, ops = run_onnx(model, x)
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=1e-5)
    assert op in ops
