"""ONNX export of graph models (cnnumpy.Model): merges, shared layers, tensors with several
consumers, checked by onnx.checker and run by onnxruntime against predict."""

from __future__ import annotations

import numpy as np
import pytest
from graph_models import ARCHITECTURES, builders, randomize, randomize_batch_norms

import cnnumpy
from cnnumpy import layers as L
from cnnumpy import models

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cnnumpy_onnx = pytest.importorskip("cnnumpy.onnx")


def run_onnx(proto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def assert_close(got: np.ndarray, want: np.ndarray, tol: float = 1e-5) -> None:
    """Within ``tol`` relative to the output's largest magnitude, or absolute below 1."""
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


def check_graph_export(model: cnnumpy.Model, batches=(4, 1), seed=0):
    proto = cnnumpy_onnx.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    rng = np.random.default_rng(seed)
    for n in batches:  # the batch dimension is symbolic
        x = rng.standard_normal((n, *model.input_shape)).astype(np.float32)
        assert_close(run_onnx(proto, x), model.predict(x))
    return proto


def op_types(proto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_graph_models_match_predict(name):
    model = ARCHITECTURES[name]()
    randomize(model)
    check_graph_export(model)


def test_float64_graph_exports_in_float32():
    model = ARCHITECTURES["resnet_basic_blocks"]("float64")
    randomize(model)
    proto = check_graph_export(model, batches=(3,))
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT}


def test_the_operators_of_each_mapping():
    merges = op_types(cnnumpy_onnx.to_onnx(ARCHITECTURES["every_merge"]()))
    for op in ("Sum", "Sub", "Mul", "Mean", "Concat"):
        assert op in merges, op
    resnet = op_types(cnnumpy_onnx.to_onnx(ARCHITECTURES["resnet_basic_blocks"]()))
    assert resnet.count("Add") == 2 and resnet.count("BatchNormalization") == 6
    assert merges.count("Mul") >= 2  # Multiply of three inputs: two binary Mul
    mobile = cnnumpy_onnx.to_onnx(ARCHITECTURES["mobilenet_v2_inverted_residual"]())
    assert op_types(mobile).count("Clip") == 3  # ReLU(6.0), "relu6" twice
    groups = [a.i for node in mobile.graph.node if node.op_type == "Conv"
              for a in node.attribute if a.name == "group"]
    assert sorted(groups) == [1, 1, 1, 8, 24]  # two depthwise convolutions: a group a channel
    assert "ConvTranspose" in op_types(cnnumpy_onnx.to_onnx(ARCHITECTURES[
        "unet_level_conv_transpose"]()))
    assert "Resize" in op_types(cnnumpy_onnx.to_onnx(ARCHITECTURES[
        "unet_level_upsampling_nearest"]()))


def test_concat_axes_follow_the_layout():
    """NHWC axes 1, 2, 3 of images that stand NCHW are ONNX axes 2, 3, 1; feature vectors
    keep theirs."""
    proto = cnnumpy_onnx.to_onnx(ARCHITECTURES["every_merge"]())
    axes = {node.name.split("/")[0]: node.attribute[0].i for node in proto.graph.node
            if node.op_type == "Concat"}
    assert axes == {"cat_rows": 2, "cat_cols": 3, "cat_chans": 1, "cat_flat": 1,
                    "cat_features": 1}


def test_a_tensor_with_several_consumers_is_transposed_once():
    """The input feeds four layers that want NCHW; one Transpose serves them all."""
    proto = cnnumpy_onnx.to_onnx(ARCHITECTURES["every_merge"]())
    from_input = [n for n in proto.graph.node if n.op_type == "Transpose" and
                  n.input[0] == "input"]
    assert len(from_input) == 1


def test_an_output_made_before_the_last_node_and_an_identity_model():
    x = cnnumpy.Input((4, 4, 2))
    h = L.Conv2D(2, 3, padding="same")(x)
    check_graph_export(cnnumpy.Model(x, L.Add()([h, h])))  # one tensor, both inputs
    check_graph_export(cnnumpy.Model(x, L.Activation(None)(x)))
    proto = check_graph_export(cnnumpy.Model(x, x))  # no layer at all: the input, as output
    assert op_types(proto) == ["Identity"]


def test_unsupported_layer_in_a_graph_is_named_and_nothing_written(tmp_path):
    class Custom(L.Activation):
        pass

    x = cnnumpy.Input((4, 4, 2))
    y = L.Add()([Custom("relu", name="mine")(x), x])
    path = tmp_path / "graph.onnx"
    with pytest.raises(ValueError, match=r"no ONNX mapping for .*mine.*Concatenate"):
        cnnumpy_onnx.export(cnnumpy.Model(x, y), path)
    assert not path.exists()


def test_saved_graph_model_exports_from_the_command_line(tmp_path, capsys):
    from cnnumpy.cli import main

    model = ARCHITECTURES["unet_level_conv_transpose"]()
    randomize(model)
    model.save(tmp_path / "unet.safetensors")
    main(["export", str(tmp_path / "unet.safetensors"), "--onnx", str(tmp_path / "unet.onnx")])
    x = np.random.default_rng(3).standard_normal((2, *model.input_shape)).astype(np.float32)
    proto = onnx.load(str(tmp_path / "unet.onnx"))
    assert_close(run_onnx(proto, x), model.predict(x))


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "unet_transpose", "unet_bilinear"])
def test_model_builders_match_predict(name):
    """ResNet-20, MobileNetV2 (alpha 0.35) and U-Net (Conv2DTranspose or bilinear
    UpSampling2D, Concatenate) of cnnumpy.models, batch norms randomized."""
    cnnumpy.set_seed(0)
    model = builders()[name]()
    randomize_batch_norms(model)
    check_graph_export(model, batches=(3,))


def test_resnet18_matches_predict():
    """torchvision's ResNet-18 layout (four stages, projection shortcuts, zero-padded max
    pooling) on small images."""
    cnnumpy.set_seed(0)
    model = models.resnet18(10, (32, 32, 3), classifier_activation=None)
    randomize_batch_norms(model)
    check_graph_export(model, batches=(2,))
