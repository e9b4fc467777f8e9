"""The JSON API of ``cnnumpy serve`` without a browser: answers equal the model's own."""

from __future__ import annotations

import base64
import contextlib
import io
import json

import numpy as np
import pytest

import cnnumpy
from cnnumpy import cli, serve
from cnnumpy.datasets import image_settings, prepare_image
from cnnumpy.feature_maps import layer_outputs


@pytest.fixture(scope="module")
def model():
    return cnnumpy.load_model(serve.default_model_path())


def decode(enc):
    h, w, c = enc["shape"]
    data = np.frombuffer(base64.b64decode(enc["data"]), np.uint8)
    return data.reshape(c, h, w).transpose(1, 2, 0)


def test_the_shipped_model_loads_and_scores_its_stated_accuracy(model):
    import os

    _, (x, y) = cnnumpy.datasets.load_mnist_sample()
    accuracy = float(np.mean(model.predict(x).argmax(axis=1) == y))
    assert abs(accuracy - serve.DEFAULT_MODEL_ACCURACY) <= 0.001  # 2 of the 2,000 digits
    assert os.path.getsize(serve.default_model_path()) < 300_000
    assert model.class_names == [str(d) for d in range(10)]
    assert image_settings(model)["background"] == 0.0  # drawings on paper are inverted


def test_predictions_equal_model_predict_on_the_same_image(running, digits, model, png):
    for image, label in zip(*digits, strict=True):
        body = png(1 - image[:, :, 0])  # ink on paper: inverted as by cnnumpy predict
        status, answer = running.json("POST", "/api/predict", body)
        assert status == 200
        expected = model.predict(prepare_image(body, image_settings(model))[None])[0]
        top = answer["top"]
        assert [t["index"] for t in top] == list(np.argsort(-expected, kind="stable"))
        probabilities = [t["probability"] for t in top]
        assert probabilities == pytest.approx(expected[[t["index"] for t in top]], abs=1e-7)
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(t["probability"] for t in top) <= 1 + 1e-6
        assert top[0]["label"] == str(label)
    status, answer = running.json("POST", "/api/predict?top=3", body)
    assert status == 200 and len(answer["top"]) == 3


def test_the_api_and_cnnumpy_predict_json_agree_on_a_file(running, tmp_path, png):
    rng = np.random.default_rng(0)
    pixels = np.ones((45, 30, 3))  # colour, another size and aspect ratio, dark ink on light
    pixels[10:35, 12:18] = rng.uniform(0, 0.2, (25, 6, 3))
    path = tmp_path / "seven.jpg"
    path.write_bytes(png(pixels, "JPEG"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["predict", serve.default_model_path(), str(path), "--json",
                         "--top-k", "10"]) == 0
    expected = json.loads(out.getvalue())[0]["top"]
    status, answer = running.json("POST", "/api/predict", path.read_bytes(), "image/jpeg")
    assert status == 200
    assert [t["label"] for t in answer["top"]] == [t["class"] for t in expected]
    assert [t["probability"] for t in answer["top"]] == [t["probability"] for t in expected]


def test_feature_maps_are_the_layers_outputs(running, digits, model, png):
    body = png(digits[0][0][:, :, 0])
    status, answer = running.json("POST", "/api/predict", body)
    assert status == 200
    image = prepare_image(body, image_settings(model))
    trace = layer_outputs(model, image)
    shown = [t for t in trace if type(t.layer).__name__ in ("Conv2D", "MaxPool2D")]
    assert [m["name"] for m in answer["layers"]] == [t.layer.name for t in shown]
    for enc, t in zip(answer["layers"], shown, strict=True):
        assert enc["shape"] == list(t.output.shape)
        assert (enc["min"], enc["max"]) == (float(t.output.min()), float(t.output.max()))
        scaled = (t.output - t.output.min()) / (t.output.max() - t.output.min()) * 255
        assert np.abs(decode(enc) - scaled).max() <= 0.5 + 1e-3
    np.testing.assert_allclose(decode(answer["input"]) / 255, image, atol=0.5 / 255 + 1e-6)
    status, info = running.json("GET", "/api/model")
    kernel = model.layers[0].params["kernel"].mean(axis=2)
    assert info["first_kernels"]["shape"] == list(kernel.shape)
    assert info["total_params"] == model.count_params() == 28_886
    assert [r["name"] for r in info["layers"]] == [layer.name for layer in model.layers]
    assert info["summary"].startswith('Model: "digits"')


def _explain(running, body, layer, row, col, channel):
    status, answer = running.json(
        "POST", f"/api/explain?layer={layer}&row={row}&col={col}&channel={channel}", body)
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("layer", [0, 2])
def test_a_convolutions_explanation_adds_up_to_the_models_value(running, digits, model, png, layer):
    body = png(digits[0][1][:, :, 0])
    trace = layer_outputs(model, prepare_image(body, image_settings(model)))
    out = trace[layer].output
    h, w, f = out.shape
    # a corner (padding for the "same" convolution), the strongest output, one in between
    strongest = np.unravel_index(out.argmax(), out.shape)
    for row, col, channel in [(0, 0, 0), tuple(int(i) for i in strongest), (h // 2, w - 1, f - 1)]:
        e = _explain(running, body, layer, row, col, channel)
        window, kernel = np.array(e["window"]), np.array(e["kernel"])
        products = np.array(e["products"])
        np.testing.assert_allclose(products, window * kernel, rtol=1e-12)
        assert e["sum"] == pytest.approx(products.sum(), abs=1e-9)
        assert e["pre_activation"] == pytest.approx(e["sum"] + e["bias"], abs=1e-12)
        assert e["value"] == pytest.approx(max(e["pre_activation"], 0.0), abs=1e-12)  # relu
        assert e["value"] == pytest.approx(float(out[row, col, channel]), abs=1e-5)
        assert e["model_value"] == float(out[row, col, channel])
        conv = model.layers[layer]
        np.testing.assert_array_equal(kernel, conv.params["kernel"][:, :, :, channel])
        assert e["bias"] == float(conv.params["bias"][channel])
        inside = np.array(e["inside"])
        x = trace[layer].input
        rows, cols = np.array(e["rows"]), np.array(e["cols"])
        for i, j in zip(*np.nonzero(inside), strict=True):
            np.testing.assert_array_equal(window[i, j], x[rows[i], cols[j]])
        assert (window[~inside] == 0).all()
    assert not np.array(_explain(running, body, 0, 0, 0, 0)["inside"]).all()  # padded corner


def test_a_max_poolings_explanation_names_the_winner(running, digits, model, png):
    body = png(digits[0][2][:, :, 0])
    trace = layer_outputs(model, prepare_image(body, image_settings(model)))
    out = trace[3].output
    row, col, channel = (int(i) for i in np.unravel_index(out.argmax(), out.shape))
    e = _explain(running, body, 3, row, col, channel)
    window = np.array(e["window"])
    assert e["kind"] == "max_pool" and window.shape == (2, 2)
    assert window[tuple(e["winner"])] == window.max() == e["value"] == e["model_value"]
    np.testing.assert_array_equal(window, trace[3].input[2 * row:2 * row + 2,
                                                         2 * col:2 * col + 2, channel])
