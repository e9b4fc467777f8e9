"""DepthwiseConv2D, SeparableConv2D and Conv2DTranspose through to_torch, from_torch and the
ONNX export (onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers as L

torch = pytest.importorskip("torch")
from cnnumpy.torch import from_torch, to_torch  # noqa: E402

IMG = (7, 8, 3)
TRANSPOSE_CASES = [  # (kernel_size, strides, padding, output_padding, dilation_rate)
    (3, 2, "valid", None, 1), (2, 3, "valid", None, 1), (3, 2, "valid", 1, 1),
    ((3, 2), (1, 2), "valid", None, (2, 1)), (3, 2, "same", None, 1), (4, 2, "same", None, 1),
    (3, 2, "same", 1, 1), (4, 2, "same", 0, 1), ((5, 2), 3, "same", (2, 1), (2, 1)),
    (1, 3, "same", None, 1),
]


def model_with(case, dtype="float32", seed=0):
    kernel_size, strides, padding, output_padding, dilation = case
    cnnumpy.set_seed(seed)
    model = cnnumpy.Sequential([
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu",
                          input_shape=IMG),
        L.SeparableConv2D(4, (3, 2), strides=2, depth_multiplier=2, activation="relu"),
        L.Conv2DTranspose(3, kernel_size, strides=strides, padding=padding,
                          output_padding=output_padding, dilation_rate=dilation,
                          activation="tanh"),
        L.SeparableConv2D(2, 2, padding=((0, 1), (1, 0)), use_bias=False),
        L.Flatten(), L.Dense(3)], dtype=dtype)
    model.build()
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # biases away from zero, so that each one is checked
        layer.set_weights({k: rng.uniform(-1, 1, v.shape) for k, v in layer.get_weights().items()})
    return model


def images(n=3, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, *IMG)).astype(dtype)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_to_torch_matches_predict_in_float64(case):
    model = model_with(case, "float64")
    x = images()
    net = to_torch(model)
    got = net(torch.tensor(x.transpose(0, 3, 1, 2))).detach().numpy()
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-10, atol=1e-10)


def test_to_torch_crops_where_symmetric_padding_cannot():
    kinds = [[type(m).__name__ for m in to_torch(model_with(case))]
             for case in TRANSPOSE_CASES]
    cropped = ["ConstantPad2d" in k for k in kinds]
    assert any(cropped) and not all(cropped)
    assert all(k.count("ConvTranspose2d") == 1 and k.count("Conv2d") == 5 for k in kinds)


@pytest.mark.parametrize("as_state_dict", [False, True])
def test_from_torch_round_trip(as_state_dict):
    case = TRANSPOSE_CASES[4]
    source = to_torch(model_with(case, seed=3))
    model = model_with(case, seed=4)
    from_torch(source.state_dict() if as_state_dict else source, model)
    reference = model_with(case, seed=3)
    for ours, theirs in zip(model.layers, reference.layers, strict=True):
        for key, value in theirs.get_weights().items():
            np.testing.assert_array_equal(ours.get_weights()[key], value.astype(np.float32))


def test_from_torch_lists_mismatches_naming_the_parts():
    source = to_torch(model_with(TRANSPOSE_CASES[0]))
    cnnumpy.set_seed(0)
    other = cnnumpy.Sequential([
        L.DepthwiseConv2D(3, depth_multiplier=2, input_shape=IMG),  # valid, not same
        L.SeparableConv2D(4, (3, 2), strides=2, depth_multiplier=1),
        L.Conv2DTranspose(3, 3, strides=1), L.SeparableConv2D(2, 2, use_bias=False),
        L.Flatten(), L.Dense(3)])
    other.build()
    before = [{k: v.copy() for k, v in layer.get_weights().items()} for layer in other.layers]
    with pytest.raises(ValueError) as info:
        from_torch(source, other)
    message = str(info.value)
    assert "DepthwiseConv2D" in message and "padding ((1, 1), (1, 1))" in message
    assert "(depthwise) <- '2' (Conv2d): 'weight' has shape (12, 1, 3, 2), expected (6, 1, 3, 2)" \
        in message
    assert "(pointwise) <- '3' (Conv2d): 'weight' has shape (4, 12, 1, 1)" in message
    assert "Conv2DTranspose" in message and "stride (2, 2) differs" in message
    for layer, weights in zip(other.layers, before, strict=True):
        for key, value in weights.items():
            np.testing.assert_array_equal(layer.get_weights()[key], value)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_onnx_export_matches_predict(case):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from cnnumpy import onnx as cnnumpy_onnx

    model = model_with(case)
    proto = cnnumpy_onnx.to_onnx(model)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("ConvTranspose") == 1 and ops.count("Conv") == 5
    groups = [a.i for n in proto.graph.node for a in n.attribute if a.name == "group"]
    assert groups[:2] == [IMG[2], IMG[2] * 2]  # the depthwise convolutions
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = images(dtype=np.float32)
    want = model.predict(x)
    got = session.run(["output"], {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
