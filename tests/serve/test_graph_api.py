"""The JSON API of ``cnnumpy serve`` for a graph model (``conftest.small_graph_model``): the
summary from the graph, every convolution, pooling and merge node's maps, and explanations
that take a node's actual input and add up to the model's own value there."""

from __future__ import annotations

import base64

import numpy as np
import pytest

import cnnumpy
from cnnumpy.datasets import image_settings, prepare_image
from cnnumpy.feature_maps import layer_outputs

SHOWN = ["stem", "pool", "shared", "shared[1]", "add", "depthwise", "avgpool", "proj"]


def decode(enc):
    h, w, c = enc["shape"]
    data = np.frombuffer(base64.b64decode(enc["data"]), np.uint8)
    return data.reshape(c, h, w).transpose(1, 2, 0)


@pytest.fixture(scope="module")
def body(png):
    rng = np.random.default_rng(3)
    pixels = np.zeros((12, 12))
    pixels[2:10, 5:8] = rng.uniform(0.6, 1.0, (8, 3))  # a bright bar on a dark ground
    return png(pixels)


@pytest.fixture(scope="module")
def image(graph_running, body):
    return prepare_image(body, image_settings(graph_running.model))


def models_own_value(model, name: str, call: int, image: np.ndarray) -> np.ndarray:
    """What ``model`` computes at that call of layer ``name``: a model ending there."""
    node = model._calls[id(model.get_layer(name))][call]
    return cnnumpy.Model(model.input, node.output).predict(image[None])[0]


def test_the_summary_rows_come_from_the_graph(graph_running):
    status, info = graph_running.json("GET", "/api/model")
    assert status == 200
    rows = {r["name"]: r for r in info["layers"]}
    assert [r["name"] for r in info["layers"]] == ["image", "stem", "pool", "shared",
                                                   "shared[1]", "add", "depthwise", "avgpool",
                                                   "proj", "concat", "gap", "fc"]
    assert [r["index"] for r in info["layers"]] == list(range(12))
    assert rows["add"]["connected_to"] == ["pool", "shared[1]"]
    assert rows["shared[1]"]["connected_to"] == ["shared"]
    assert rows["concat"]["connected_to"] == ["avgpool", "proj"]
    assert rows["image"]["connected_to"] == []
    assert rows["depthwise"]["output_shape"] == [None, 6, 6, 8]
    assert rows["concat"]["output_shape"] == [None, 3, 3, 10]
    assert rows["shared"]["params"] == 4 * 9 * 4 + 4 and rows["shared[1]"]["params"] == 0
    assert sum(r["params"] for r in info["layers"]) == info["total_params"]
    assert [r["name"] for r in info["layers"] if r["shown"]] == SHOWN
    assert [r["name"] for r in info["layers"] if r["explainable"]] == [
        "stem", "pool", "shared", "shared[1]", "depthwise", "avgpool", "proj"]
    assert "Connected to" in info["summary"] and "shared[1][0]" in info["summary"]
    assert info["first_kernels"]["layer"] == "stem"
    assert info["first_kernels"]["shape"] == [3, 3, 4]


def test_predict_shows_every_conv_pool_and_merge_node(graph_running, body, image):
    model = graph_running.model
    status, answer = graph_running.json("POST", "/api/predict", body)
    assert status == 200
    expected = model.predict(image[None])[0]
    assert [t["index"] for t in answer["top"]] == list(np.argsort(-expected, kind="stable"))
    assert [t["probability"] for t in answer["top"]] == pytest.approx(
        np.sort(expected)[::-1], abs=1e-7)
    assert [m["name"] for m in answer["layers"]] == SHOWN
    trace = {t.name: t for t in layer_outputs(model, image)}
    for enc in answer["layers"]:
        t = trace[enc["name"]]
        assert enc["index"] == t.index and enc["shape"] == list(t.output.shape)
        own = models_own_value(model, t.layer.name, t.call, image)
        np.testing.assert_allclose([enc["min"], enc["max"]], [own.min(), own.max()],
                                   rtol=1e-5, atol=1e-6)
        scaled = (own - own.min()) / (own.max() - own.min()) * 255
        assert np.abs(decode(enc) - scaled).max() <= 0.5 + 1e-2


def _explain(server, body, layer, row, col, channel):
    return server.json(
        "POST", f"/api/explain?layer={layer}&row={row}&col={col}&channel={channel}", body)


@pytest.mark.parametrize(("name", "call"), [("stem", 0), ("shared", 0), ("shared", 1),
                                            ("depthwise", 0), ("proj", 0)])
def test_a_convolution_nodes_explanation_adds_up_to_the_models_value(graph_running, body,
                                                                      image, name, call):
    model = graph_running.model
    trace = {(t.layer.name, t.call): t for t in layer_outputs(model, image)}
    step = trace[(name, call)]
    own = models_own_value(model, name, call, image)
    h, w, f = own.shape
    strongest = tuple(int(i) for i in np.unravel_index(own.argmax(), own.shape))
    for row, col, channel in [(0, 0, 0), strongest, (h // 2, w - 1, f - 1)]:
        status, e = _explain(graph_running, body, step.index, row, col, channel)
        assert status == 200, e
        window, kernel = np.array(e["window"]), np.array(e["kernel"])
        products = np.array(e["products"])
        np.testing.assert_allclose(products, window * kernel, rtol=1e-12)
        assert e["pre_activation"] == pytest.approx(products.sum() + e["bias"], abs=1e-9)
        expected = max(e["pre_activation"], 0.0) if e["activation"] == "relu" \
            else e["pre_activation"]
        assert e["value"] == pytest.approx(expected, abs=1e-12)
        assert e["layer"] == step.name  # "shared[1]" for the shared layer's second call
        assert e["value"] == pytest.approx(float(own[row, col, channel]), abs=1e-5)
        assert e["model_value"] == pytest.approx(float(own[row, col, channel]), abs=1e-5)
        # the window is read from the node's own input (its source node's output)
        first, last = e["input_channels"]
        source = step.node.inputs[0]
        x = models_own_value(model, source.layer.name, model.node_index(source.node), image)
        rows, cols, inside = np.array(e["rows"]), np.array(e["cols"]), np.array(e["inside"])
        for i, j in zip(*np.nonzero(inside), strict=True):
            np.testing.assert_allclose(window[i, j], x[rows[i], cols[j], first:last],
                                       rtol=1e-6, atol=1e-6)
        if name == "depthwise":  # output c * 2 + m reads input channel c alone
            assert (first, last) == (channel // 2, channel // 2 + 1)
            assert e["type"] == "DepthwiseConv2D" and window.shape == (3, 3, 1)
            layer_kernel = model.get_layer("depthwise").params["kernel"]
            np.testing.assert_array_equal(kernel[:, :, 0],
                                          layer_kernel[:, :, channel // 2, channel % 2])


@pytest.mark.parametrize(("name", "kind"), [("pool", "max_pool"), ("avgpool", "avg_pool")])
def test_a_pooling_nodes_explanation_takes_its_input(graph_running, body, image, name, kind):
    model = graph_running.model
    index = next(t.index for t in layer_outputs(model, image) if t.name == name)
    own = models_own_value(model, name, 0, image)
    row, col, channel = (int(i) for i in np.unravel_index(own.argmax(), own.shape))
    status, e = _explain(graph_running, body, index, row, col, channel)
    assert status == 200 and e["kind"] == kind
    assert e["value"] == pytest.approx(float(own[row, col, channel]), abs=1e-5)
    source = model._calls[id(model.get_layer(name))][0].inputs[0]
    x = models_own_value(model, source.layer.name, 0, image)
    np.testing.assert_allclose(np.array(e["window"]),
                               x[2 * row:2 * row + 2, 2 * col:2 * col + 2, channel], rtol=1e-6)


def test_a_merge_or_a_missing_node_is_refused_by_name(graph_running, body):
    status, e = _explain(graph_running, body, 5, 0, 0, 0)  # "add"
    assert status == 400 and "'add'" in e["error"] and "DepthwiseConv2D" in e["error"]
    status, e = _explain(graph_running, body, 12, 0, 0, 0)
    assert status == 400 and "layers 0 to 11" in e["error"]
