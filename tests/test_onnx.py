"""ONNX export: every layer and option checked by onnx.checker and run by onnxruntime."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cnnumpy_onnx = pytest.importorskip("cnnumpy.onnx")

ATOL = 1e-5


def test_importing_cnnumpy_imports_neither_onnx_nor_torch():
    code = ("import sys, cnnumpy, cnnumpy.cli, cnnumpy.models, cnnumpy.io\n"
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def run_onnx(source, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if not isinstance(source, (str, os.PathLike)):
        source = source.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def randomize_batch_norms(model: cnnumpy.Sequential, rng: np.random.Generator) -> None:
    """Moving statistics and scales away from their initial 0/1, so they are exercised."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights({k: rng.uniform(0.5, 1.5, v.shape) * (1 if "var" in k else
                                                                   rng.choice([-1, 1], v.shape))
                               for k, v in layer.get_weights().items()})


def check_export(model_layers, input_shape, opset=None, batch=5, seed=0):
    """Export, validate, and compare onnxruntime with predict on random inputs."""
    cnnumpy.set_seed(seed)
    model = cnnumpy.Sequential(model_layers)
    model.build(input_shape)
    rng = np.random.default_rng(seed)
    randomize_batch_norms(model, rng)
    proto = cnnumpy_onnx.to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    for n in (batch, 1):  # the batch dimension is symbolic
        x = rng.normal(size=(n, *input_shape)).astype(np.float32)
        got = run_onnx(proto, x)
        want = model.predict(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    return proto


IMG = (9, 10, 4)
CASES = {
    "conv-valid": lambda: [L.Conv2D(3, 3)],
    "conv-same-stride2": lambda: [L.Conv2D(5, 3, strides=2, padding="same")],
    "conv-same-even-kernel": lambda: [L.Conv2D(3, 4, padding="same")],
    "conv-same-stride-pair": lambda: [L.Conv2D(3, (2, 3), strides=(1, 3), padding="same")],
    "conv-int-padding": lambda: [L.Conv2D(3, 3, padding=2)],
    "conv-pair-padding": lambda: [L.Conv2D(3, 3, padding=(0, 2))],
    "conv-explicit-padding": lambda: [L.Conv2D(3, (3, 2), padding=((0, 2), (3, 1)))],
    "conv-dilation-same": lambda: [L.Conv2D(3, 3, dilation_rate=(2, 3), padding="same")],
    "conv-groups": lambda: [L.Conv2D(6, 3, groups=2, strides=2, padding="same")],
    "conv-depthwise": lambda: [L.Conv2D(8, 3, groups=4, padding="same", use_bias=False)],
    "maxpool-valid": lambda: [L.MaxPool2D(2)],
    "maxpool-same": lambda: [L.MaxPool2D(3, 2, padding="same")],
    "maxpool-same-rect": lambda: [L.MaxPool2D((2, 3), (1, 2), padding="same")],
    "avgpool-valid": lambda: [L.AvgPool2D(3, 2)],
    "avgpool-same": lambda: [L.AvgPool2D(3, 2, padding="same")],
    "avgpool-same-stride1": lambda: [L.AvgPool2D((2, 3), 1, padding="same")],
    "global-avg": lambda: [L.Conv2D(3, 3), L.GlobalAvgPool2D()],
    "global-max": lambda: [L.GlobalMaxPool2D()],
    "flatten-dense": lambda: [L.Conv2D(3, 3), L.Flatten(), L.Dense(7)],
    "flatten-first": lambda: [L.Flatten(), L.Dense(4, use_bias=False)],
    "dense-on-channels": lambda: [L.Dense(3, activation="relu"), L.Flatten()],
    "dense-after-conv": lambda: [L.Conv2D(3, 3), L.Dense(2)],
    "batchnorm-image": lambda: [L.Conv2D(3, 3), L.BatchNormalization(epsilon=1e-2)],
    "batchnorm-first": lambda: [L.BatchNormalization(), L.Conv2D(3, 3)],
    "batchnorm-features": lambda: [L.Flatten(), L.BatchNormalization(), L.Dense(3)],
    "dropout": lambda: [L.Conv2D(3, 3), L.Dropout(0.5), L.Flatten(), L.Dropout(0.3)],
    "activation-linear": lambda: [L.Activation("linear"), L.Activation(None)],
    "softmax-on-channels": lambda: [L.Conv2D(3, 3, activation="softmax")],
    "random-flip": lambda: [L.RandomFlip("horizontal_and_vertical")],
    "random-translation": lambda: [L.RandomTranslation(0.2, 0.2)],
    "random-rotation": lambda: [L.RandomRotation(0.1)],
    "random-contrast": lambda: [L.RandomContrast(0.3)],
    "random-erasing": lambda: [L.RandomErasing(1.0)],
    "random-crop-same-size": lambda: [L.RandomCrop(9, 10, padding=2)],
    "random-crop-smaller": lambda: [L.RandomCrop(6, 5), L.Conv2D(2, 3)],
    "random-crop-larger": lambda: [L.Conv2D(2, 3), L.RandomCrop(9, 11, padding=2)],
    "random-crop-mixed": lambda: [L.RandomCrop(11, 7, padding=1)],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_matches_predict(name):
    check_export(CASES[name](), IMG)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh",
                                        "softmax", "linear"])
@pytest.mark.parametrize("opset", [13, 17, 20])
def test_activations_match_predict(activation, opset):
    proto = check_export([L.Flatten(), L.Dense(6, activation=activation),
                          L.Activation(activation)], (3, 3, 2), opset=opset)
    ops = {node.op_type for node in proto.graph.node}
    assert ("Gelu" in ops) == (activation == "gelu" and opset >= 20)


@pytest.mark.parametrize("shape, model_layers", [
    ((7,), lambda: [L.Dense(5, activation="tanh"), L.BatchNormalization(), L.Dense(3)]),
    ((6, 4), lambda: [L.Dense(5, activation="elu"), L.BatchNormalization(), L.Flatten()]),
])
def test_non_image_inputs(shape, model_layers):
    check_export(model_layers(), shape)


def test_float64_model_exports_in_float32():
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([L.Conv2D(3, 3, activation="relu", input_shape=IMG),
                                L.GlobalAvgPool2D(), L.Dense(2)], dtype="float64")
    model.build()
    x = np.random.default_rng(0).normal(size=(4, *IMG))
    got = run_onnx(cnnumpy_onnx.to_onnx(model), x.astype(np.float32))
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=ATOL)


def test_graph_interface_and_file(tmp_path):
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([L.Conv2D(2, 3, input_shape=IMG), L.Flatten(), L.Dense(3)],
                               name="tiny")
    model.build()
    path = tmp_path / "tiny.onnx"
    cnnumpy_onnx.export(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import] == [cnnumpy_onnx.DEFAULT_OPSET]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["batch", *IMG]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.name == "output"
    x = np.random.default_rng(1).normal(size=(3, *IMG)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(str(path), x), model.predict(x), rtol=0, atol=ATOL)
    assert os.listdir(tmp_path) == ["tiny.onnx"]


def test_a_model_built_at_construction_exports_before_any_training(tmp_path):
    model = cnnumpy.Sequential([L.Conv2D(2, 3, input_shape=IMG), L.Flatten(), L.Dense(3)])
    cnnumpy_onnx.export(model, tmp_path / "fresh.onnx")  # no build(), fit or predict first
    x = np.random.default_rng(1).normal(size=(2, *IMG)).astype(np.float32)
    got = run_onnx(str(tmp_path / "fresh.onnx"), x)
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=ATOL)


class Doubler(L.Layer):
    def call(self, x, training):
        return 2 * x


@pytest.mark.parametrize("make_layer", [Doubler, lambda: type("MyConv", (L.Conv2D,), {})(2, 3)])
def test_unsupported_layer_names_it_and_writes_nothing(tmp_path, make_layer):
    layer = make_layer()
    model = cnnumpy.Sequential([L.Conv2D(2, 3, input_shape=IMG), layer])
    model.build()
    old = tmp_path / "old.onnx"
    old.write_bytes(b"previous")
    for path in (tmp_path / "new.onnx", old):
        with pytest.raises(ValueError, match=layer.label):
            cnnumpy_onnx.export(model, path)
    assert sorted(os.listdir(tmp_path)) == ["old.onnx"]
    assert old.read_bytes() == b"previous"


def test_unbuilt_model_and_bad_opset_are_refused(tmp_path):
    model = cnnumpy.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        cnnumpy_onnx.export(model, tmp_path / "m.onnx")
    model.build((3,))
    for opset in (12, 10_000, "17", True):
        with pytest.raises(ValueError, match="opset"):
            cnnumpy_onnx.export(model, tmp_path / "m.onnx", opset=opset)
    assert os.listdir(tmp_path) == []


def test_trained_lenet_gives_the_same_digits(tmp_path):
    from cnnumpy.datasets import load_mnist_sample

    (x_train, y_train), (x_test, y_test) = load_mnist_sample()
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([
        L.Conv2D(6, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        L.MaxPool2D(2),
        L.Conv2D(16, 5, activation="relu"),
        L.BatchNormalization(),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dropout(0.2),
        L.Dense(84, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    path = str(tmp_path / "lenet.onnx")
    cnnumpy_onnx.export(model, path)
    want = model.predict(x_test, batch_size=500)
    got = run_onnx(path, x_test)
    assert np.mean(want.argmax(axis=1) == y_test) > 0.9  # it did learn
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_cli_export(tmp_path, capsys):
    from cnnumpy import cli

    if not hasattr(cli, "cmd_export"):
        pytest.skip("cnnumpy.cli has no export command yet")
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([L.Conv2D(2, 3, activation="gelu", input_shape=(8, 8, 1)),
                                L.Flatten(), L.Dense(3, activation="softmax")])
    model.build()
    model.save(str(tmp_path / "m.safetensors"))
    out = str(tmp_path / "m.onnx")
    assert cli.main(["export", str(tmp_path / "m.safetensors"), "--onnx", out]) == 0
    assert "m.onnx" in capsys.readouterr().out
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(out, x), model.predict(x), rtol=0, atol=ATOL)
    assert cli.main(["export", str(tmp_path / "m.safetensors"), "--onnx",
                     str(tmp_path / "bad.onnx"), "--opset", "3"]) == 1
    assert "opset" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.safetensors"]
