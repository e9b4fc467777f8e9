"""Hostile graph model files: load_model rebuilds a graph only from the explicit layer tables
and refuses every malformed graph with a ModelFormatError naming the problem and the file."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import cnnumpy
from cnnumpy import ModelFormatError, layers


def small_model():
    x = cnnumpy.Input((6, 6, 2), name="in")
    h = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(x)
    r = layers.Conv2D(3, 3, padding="same", name="conv2")(h)
    y = layers.Add(name="add")([h, r])
    y = layers.Dense(2, name="head")(layers.Flatten(name="flat")(y))
    return cnnumpy.Model(x, y, name="small")


@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "graph.safetensors")
    small_model().save(path)
    return path


def read(path):
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = dict(f.metadata())
    return meta, load_file(path)


def rewrite(path, edit_config=None, edit_tensors=None):
    """Write a copy of the file at ``path`` with its config and tensors edited."""
    meta, tensors = read(path)
    config = json.loads(meta["model_config"])
    if edit_config is not None:
        edit_config(config)
    if edit_tensors is not None:
        edit_tensors(tensors)
    meta["model_config"] = json.dumps(config)
    out = path.replace(".safetensors", "-edited.safetensors")
    save_file(tensors, out, metadata=meta)
    return out


def layer(config, name):
    return next(item for item in config["layers"] if item["name"] == name)


def test_the_file_names_tensors_by_layer_name(saved):
    meta, tensors = read(saved)
    assert set(tensors) == {"layers.conv1.kernel", "layers.conv1.bias", "layers.conv2.kernel",
                            "layers.conv2.bias", "layers.head.kernel", "layers.head.bias"}
    config = json.loads(meta["model_config"])
    assert config["class_name"] == "Model"
    assert layer(config, "add")["inbound_nodes"] == [[["conv1", 0, 0], ["conv2", 0, 0]]]
    assert config["input_layers"] == [["in", 0, 0]]
    assert config["output_layers"] == [["head", 0, 0]]
    assert isinstance(cnnumpy.load_model(saved), cnnumpy.Model)


def _set(name, key, value):
    def edit(config):
        layer(config, name)[key] = value
    return edit


def _duplicate(config):
    item = copy.deepcopy(layer(config, "conv2"))
    item["name"] = item["config"]["name"] = "conv1"
    config["layers"][2] = item


def _cycle(config):
    layer(config, "conv1")["inbound_nodes"] = [[["conv2", 0, 0]]]


def _second_input(config):
    config["layers"].insert(0, {"class_name": "InputLayer", "name": "other", "inbound_nodes": [],
                                "config": {"name": "other", "shape": [6, 6, 3],
                                           "dtype": "float32"}})
    layer(config, "conv2")["inbound_nodes"] = [[["other", 0, 0]]]


def _dangling(config):
    item = copy.deepcopy(layer(config, "flat"))
    item["name"] = item["config"]["name"] = "unused"
    config["layers"].append(item)


def _input_shape(config):
    layer(config, "in")["config"]["shape"] = [5, 6, 2]


def _output(config):
    config["output_layers"] = [["head", 0, 0], ["add", 0, 0]]


HOSTILE = {
    "unknown layer": (_set("conv2", "class_name", "Lambda"), r"unknown layer class 'Lambda'"),
    "module path as class": (_set("conv2", "class_name", "os.system"),
                             r"unknown layer class 'os.system'"),
    "duplicate names": (_duplicate, r"duplicate layer name 'conv1'"),
    "missing layer": (_set("add", "inbound_nodes", [[["conv1", 0, 0], ["ghost", 0, 0]]]),
                      r"layer 'add' call 0 refers to a missing layer 'ghost'"),
    "missing call": (_set("add", "inbound_nodes", [[["conv1", 0, 0], ["conv2", 3, 0]]]),
                     r"\['conv2', 3, 0\], but layer 'conv2' has 1 call"),
    "bad reference": (_set("add", "inbound_nodes", [["conv1", "conv2"]]),
                      r"tensor reference must be \[layer_name, node_index, 0\]"),
    "cycle": (_cycle, r"the layers conv1 -> conv2 -> conv1 form a cycle"),
    "disconnected output": (_second_input, r"graph disconnected.*'other'"),
    "layer not connected to the output": (_dangling, r"layer 'unused' is not connected"),
    "layer without inbound nodes": (_set("conv2", "inbound_nodes", []),
                                    r"'conv2': has no inbound nodes"),
    "input layer with inbound nodes": (_set("in", "inbound_nodes", [[["conv1", 0, 0]]]),
                                       r"InputLayer takes no inbound nodes"),
    "shape disagreement": (_input_shape, r"Conv2D 'conv1' was given input_shape=\(6, 6, 2\), "
                                         r"but is called on InputLayer 'in' \(output shape "
                                         r"\(5, 6, 2\)\)"),
    "merge of one input": (_set("add", "inbound_nodes", [[["conv1", 0, 0]]]),
                           r"Add 'add'.*at least 2 inputs, received 1"),
    "two inputs to a dense": (_set("head", "inbound_nodes", [[["flat", 0, 0], ["flat", 0, 0]]]),
                              r"Dense 'head' takes one input, the config gives 2"),
    "huge layer": (lambda c: layer(c, "head")["config"].update(units=2**40),
                   r"Dense 'head': an output of shape \(1099511627776,\) per sample is more "
                   r"than a model file may declare"),
    "several outputs": (_output, r"output_layers must be a list of exactly one"),
    "layers not a list": (lambda c: c.update(layers={}), r"'layers' list"),
    "name disagrees with config": (_set("conv2", "name", "conv9"),
                                   r"name 'conv9' disagrees with its config's name 'conv2'"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_malformed_graphs_are_refused_by_name(saved, case):
    edit, message = HOSTILE[case]
    path = rewrite(saved, edit_config=edit)
    with pytest.raises(ModelFormatError, match=message) as info:
        cnnumpy.load_model(path)
    assert path in str(info.value)


def test_weights_that_disagree_with_the_config_are_all_listed(saved):
    def edit(tensors):
        tensors["layers.conv2.kernel"] = np.zeros((3, 3, 3, 4), np.float32)
        del tensors["layers.head.bias"]
        tensors["layers.ghost.kernel"] = np.zeros((1,), np.float32)

    with pytest.raises(ModelFormatError) as info:
        cnnumpy.load_model(rewrite(saved, edit_tensors=edit))
    text = str(info.value)
    assert "tensor 'layers.conv2.kernel' has shape (3, 3, 3, 4), Conv2D 'conv2' expects " \
           "(3, 3, 3, 3)" in text
    assert "missing tensor 'layers.head.bias' (Dense 'head')" in text
    assert "unexpected tensor 'layers.ghost.kernel'" in text


def test_a_changed_layer_config_is_a_shape_disagreement(saved):
    path = rewrite(saved, edit_config=lambda c: layer(c, "head")["config"].update(units=3))
    with pytest.raises(ModelFormatError, match=r"'layers.head.kernel' has shape \(108, 2\), "
                                               r"Dense 'head' expects \(108, 3\)"):
        cnnumpy.load_model(path)


def _paths(value, prefix=()):
    """Every place in a JSON value: a list of key paths."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*prefix, key))


def test_random_config_mutations_load_or_raise_model_format_error(saved):
    """Fuzz: any one value of the config replaced by a hostile one; loading either works or
    raises ModelFormatError, never another exception."""
    meta, _ = read(saved)
    config = json.loads(meta["model_config"])
    places = [p for p in _paths(config) if p]
    hostile = [None, -1, 0, 7, 2**40, 1.5, "", "conv1", "Lambda", [], {}, [["conv1", 0, 0]],
               ["conv2", 0, 0], [[["in", 0, 0], ["in", 0, 0]]], {"name": "x"}, True]
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(150):
        place = places[rng.integers(len(places))]
        value = hostile[rng.integers(len(hostile))]

        def edit(c, place=place, value=value):
            target = c
            for key in place[:-1]:
                target = target[key]
            target[place[-1]] = copy.deepcopy(value)

        path = rewrite(saved, edit_config=edit)
        try:
            cnnumpy.load_model(path)
            outcomes["loaded"] += 1
        except ModelFormatError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50


# ----- config bombs: refused before anything is allocated, the generator untouched ------------
def _chain(count):
    def edit(config):
        config["layers"] += [{"class_name": "ReLU", "name": f"r{i}", "config": {},
                              "inbound_nodes": [[[f"r{i - 1}" if i else "head", 0, 0]]]}
                             for i in range(count)]
        config["output_layers"] = [[f"r{count - 1}", 0, 0]]
    return edit


def _many_calls(config):
    item = layer(config, "flat")
    item["inbound_nodes"] = item["inbound_nodes"] * 5000


def _deep(config):
    layer(config, "add")["inbound_nodes"] = "DEEP"  # replaced in the JSON text


GRAPH_BOMBS = {
    "dense units 2e7": (lambda c: layer(c, "head")["config"].update(units=20_000_000),
                        r"implies at least 8,720,000,564 bytes of weights"),
    "dense units 1e30": (lambda c: layer(c, "head")["config"].update(units=10**30),
                         r"Dense 'head': an output of shape"),
    "conv filters 1e9": (lambda c: layer(c, "conv2")["config"].update(filters=10**9),
                         r"Conv2D 'conv2': an output of shape \(6, 6, 1000000000\)"),
    "input shape 1e9": (lambda c: layer(c, "in")["config"].update(shape=[10**9, 10**9, 2]),
                        r"InputLayer 'in': an output of shape"),
    "5000 layers": (_chain(5000), r"5006 layers; a model file may declare at most 1000"),
    "5000 calls": (_many_calls, r"5004 layer calls; a model file may declare at most 1000"),
    "deep nesting": (_deep, r"model_config is nested too deeply"),
}


@pytest.mark.parametrize("bomb", sorted(GRAPH_BOMBS))
def test_graph_config_bombs_are_refused_fast_and_small(saved, bomb):
    import time
    import tracemalloc

    edit, message = GRAPH_BOMBS[bomb]
    path = rewrite(saved, edit_config=edit)
    if bomb == "deep nesting":  # 100,000 nested lists where a call's inputs should be
        meta, tensors = read(path)
        meta["model_config"] = meta["model_config"].replace(
            '"DEEP"', "[" * 100_000 + "]" * 100_000)
        save_file(tensors, path, metadata=meta)
    cnnumpy.set_seed(7)
    state = cnnumpy.backend.rng_state()
    tracemalloc.start()
    start = time.process_time()  # CPU time: other work on a busy machine does not count
    try:
        with pytest.raises(ModelFormatError, match=message):
            cnnumpy.load_model(path)
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, f"refused after {elapsed:.2f} s of CPU time"  # 4 s and GBs before
    assert peak < 4_000_000, f"peak allocation {peak:,} bytes"
    assert cnnumpy.backend.rng_state() == state


def test_a_long_legal_chain_loads(saved):
    model = cnnumpy.load_model(rewrite(saved, edit_config=_chain(900)))
    assert len(model.layers) == 906


def test_loading_a_graph_runs_no_initializer_and_leaves_the_generator(saved, monkeypatch):
    from cnnumpy.layers.base import Layer

    x = np.random.default_rng(0).random((3, 6, 6, 2), dtype=np.float32)
    expected = cnnumpy.load_model(saved).predict(x)

    def refuse(self, name, shape):
        raise AssertionError(f"{self.label}: an initializer ran for {name!r}")

    for cls in {type(lay) for lay in small_model().layers}:
        if "_initial_value" in vars(cls) or cls is Layer:
            monkeypatch.setattr(cls, "_initial_value", refuse)
    cnnumpy.set_seed(11)
    state = cnnumpy.backend.rng_state()
    loaded = cnnumpy.load_model(saved)
    assert cnnumpy.backend.rng_state() == state
    np.testing.assert_array_equal(loaded.predict(x), expected)
