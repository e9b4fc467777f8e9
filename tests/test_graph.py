"""The functional API: Input, layers called on symbolic tensors, and cnnumpy.Model with the
surface of Sequential (compile, fit, evaluate, predict, train_on_batch, summary, config,
files)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import callbacks, layers
from cnnumpy.graph import SymbolicTensor


def residual_model(num_classes=4, shape=(8, 8, 1), dtype=None):
    x = cnnumpy.Input(shape, dtype=dtype, name="image")
    h = layers.Conv2D(6, 3, padding="same", activation="relu", name="stem")(x)
    r = layers.Conv2D(6, 3, padding="same", name="branch")(h)
    r = layers.BatchNormalization(name="branch_bn")(r)
    h = layers.ReLU(name="merge_relu")(layers.Add(name="add")([h, r]))
    h = layers.Flatten(name="flat")(layers.MaxPool2D(2, name="pool")(h))
    y = layers.Dense(num_classes, activation="softmax", name="head")(h)
    return cnnumpy.Model(x, y, name="residual")


def toy_data(n=256, seed=0):
    """Four classes: which quadrant of an 8x8 image holds a bright square."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 4, n)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 4 * r:4 * r + 3, 4 * q:4 * q + 3] += 0.7
    return x, y


# ----- symbolic tensors -----------------------------------------------------------------------
def test_calling_a_layer_records_a_node_and_infers_the_shape():
    x = cnnumpy.Input((28, 28, 1))
    assert isinstance(x, SymbolicTensor) and x.shape == (28, 28, 1)
    assert x.dtype == np.float32
    conv = layers.Conv2D(16, 3, strides=2, padding="same")
    y = conv(x)
    assert conv.built and conv.input_shape == (28, 28, 1)
    assert y.shape == (14, 14, 16) and y.layer is conv and y.node.inputs == [x]
    assert conv(x) is not y  # a second call is a second node


def test_input_validates_and_sets_the_dtype():
    with pytest.raises(ValueError, match="Input: shape"):
        cnnumpy.Input((0, 3))
    with pytest.raises(TypeError, match="Input: dtype must be float32 or float64"):
        cnnumpy.Input((3,), dtype="int32")
    x = cnnumpy.Input((4,), dtype="float64")
    assert layers.Dense(2)(x).dtype == np.float64


def test_a_shape_mismatch_names_both_layers_and_both_shapes():
    x = cnnumpy.Input((8, 8, 1))
    dense = layers.Dense(4, name="fc")
    dense(layers.Flatten(name="flat")(x))  # built for 64 features
    conv = layers.Conv2D(2, 3, name="conv")
    with pytest.raises(ValueError, match=r"Dense 'fc'.*\(64,\).*Conv2D 'conv' "
                                         r"\(output shape \(6, 6, 2\)\)"):
        dense(conv(x))
    with pytest.raises(ValueError, match=r"Conv2D 'c2'.*Flatten 'flat2' \(output shape "
                                         r"\(64,\)\)"):
        layers.Conv2D(2, 3, name="c2")(layers.Flatten(name="flat2")(x))
    with pytest.raises(ValueError, match=r"Add 'add_bad'.*Conv2D 'a' \(output shape \(8, 8, "
                                         r"2\)\).*Conv2D 'b' \(output shape \(8, 8, 3\)\)"):
        layers.Add(name="add_bad")([layers.Conv2D(2, 1, padding="same", name="a")(x),
                                    layers.Conv2D(3, 1, padding="same", name="b")(x)])
    with pytest.raises(ValueError, match=r"input_shape=\(4, 4, 1\).*Input"):
        layers.Conv2D(2, 3, input_shape=(4, 4, 1))(x)


def test_merge_layers_take_lists_and_other_layers_do_not():
    x = cnnumpy.Input((4,))
    with pytest.raises(ValueError, match="takes a list of tensors"):
        layers.Add()(x)
    with pytest.raises(ValueError, match="takes one tensor, received a list of 2"):
        layers.Dense(2)([x, x])
    with pytest.raises(TypeError, match="symbolic tensors"):
        layers.Add()([x, np.zeros((1, 4))])


# ----- Model construction ---------------------------------------------------------------------
def test_model_layers_get_layer_and_count_params():
    model = residual_model()
    assert [layer.name for layer in model.layers] == [
        "image", "stem", "branch", "branch_bn", "add", "merge_relu", "pool", "flat", "head"]
    assert model.get_layer("branch") is model.layers[2]
    with pytest.raises(ValueError, match="no layer named 'nope'.*'stem'"):
        model.get_layer("nope")
    assert model.count_params() == 60 + 330 + 24 + 388
    assert model.input_shape == (8, 8, 1) and model.output_shape == (4,)


def test_model_refusals():
    x = cnnumpy.Input((4,))
    y = layers.Dense(2)(x)
    with pytest.raises(ValueError, match="exactly one input"):
        cnnumpy.Model([x, cnnumpy.Input((4,))], y)
    with pytest.raises(ValueError, match="exactly one output"):
        cnnumpy.Model(x, [y, y])
    with pytest.raises(ValueError, match="must come from cnnumpy.Input"):
        cnnumpy.Model(y, layers.Dense(1)(y))
    other = cnnumpy.Input((4,), name="other")
    with pytest.raises(ValueError, match="graph disconnected.*'other'"):
        cnnumpy.Model(x, layers.Add()([y, layers.Dense(2)(other)]))
    z = layers.Dense(2, name="twin")(layers.Dense(4, name="twin")(x))
    with pytest.raises(ValueError, match="two different layers are named 'twin'"):
        cnnumpy.Model(x, z)


def test_a_layer_built_in_a_model_is_refused_by_a_sequential_it_does_not_fit():
    """A layer from a graph (built there) placed where its input shape differs is named at
    add (or at the first batch of an unbuilt Sequential), not at predict's shape check;
    where it fits, it is shared: the same weights in both models."""
    x = cnnumpy.Input((5,))
    dense = layers.Dense(3, name="shared_dense")
    model = cnnumpy.Model(x, dense(x))
    with pytest.raises(ValueError, match=r"Sequential.add: Dense 'shared_dense' does not fit.*"
                                         r"built for input shape \(5,\).*outputs \(4,\)"):
        cnnumpy.Sequential([layers.Dense(4, input_shape=(3,)), dense])
    lazy = cnnumpy.Sequential([layers.Dense(4), dense])
    with pytest.raises(ValueError, match=r"Dense 'shared_dense' is already built for input "
                                         r"shape \(5,\).*outputs \(4,\)"):
        lazy.predict(np.ones((2, 3), np.float32))
    stack = cnnumpy.Sequential([layers.Dense(5, input_shape=(3,)), dense])
    assert stack.layers[1].params["kernel"] is model.layers[1].params["kernel"]
    assert stack.predict(np.ones((2, 3), np.float32)).shape == (2, 3)


def test_summary_has_a_connected_to_column():
    x = cnnumpy.Input((4,), name="inp")
    shared = layers.Dense(4, name="shared")
    y = layers.Add(name="sum")([shared(x), shared(shared(x))])
    text = cnnumpy.Model(x, y).summary(print_fn=None)
    assert "Connected to" in text.splitlines()[2]
    row = {line.split()[0]: line for line in text.splitlines()[4:]}
    assert row["shared"].endswith("inp[0][0], inp[0][0], shared[1][0]")
    assert row["sum"].endswith("shared[0][0], shared[2][0]")
    assert "Total params: 20" in text


def test_config_round_trip_replays_shared_layers_in_any_order():
    x = cnnumpy.Input((5,), name="in")
    a, b = layers.Dense(5, name="a"), layers.Dense(5, activation="tanh", name="b")
    model = cnnumpy.Model(x, a(b(a(x))))  # a's second call needs b's first
    config = model.get_config()
    assert config["layers"][1]["inbound_nodes"] == [[["in", 0, 0]], [["b", 0, 0]]]
    clone = cnnumpy.Model.from_config(config)
    assert clone.get_config() == config
    for layer in model.layers:
        clone.get_layer(layer.name).set_weights(layer.get_weights())
    xs = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(clone.predict(xs), model.predict(xs))


# ----- training, evaluation, files ----------------------------------------------------------
def test_a_residual_model_trains_through_fit(tmp_path):
    cnnumpy.set_seed(0)
    model = residual_model()
    model.compile(cnnumpy.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x, y = toy_data(320)
    weights = np.where(y == 0, 2.0, 1.0)
    logger = callbacks.CSVLogger(str(tmp_path / "log.csv"))
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "best.safetensors"))
    history = model.fit(x[:256], y[:256], epochs=6, batch_size=32, verbose=0,
                        validation_data=(x[256:], y[256:]), sample_weight=weights[:256],
                        callbacks=[logger, checkpoint, callbacks.EarlyStopping(patience=3)])
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    assert history.history["val_accuracy"][-1] > 0.9
    assert (tmp_path / "log.csv").read_text().count("\n") == len(losses) + 1
    loaded = cnnumpy.load_model(str(tmp_path / "best.safetensors"))
    assert isinstance(loaded, cnnumpy.Model) and loaded.epoch == len(losses)
    result = model.evaluate(x[256:], y[256:])
    assert set(result) == {"loss", "accuracy"}
    logs = model.train_on_batch(x[:8], y[:8])
    assert np.isfinite(logs["loss"])


def test_save_and_load_predict_bit_identically(tmp_path):
    cnnumpy.set_seed(1)
    model = residual_model(dtype="float64")
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = toy_data(64)
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "graph.safetensors")
    model.save(path)
    loaded = cnnumpy.load_model(path)
    assert loaded.get_config() == model.get_config()
    out = loaded.predict(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, model.predict(x))
    for layer in model.layers:
        for key, value in layer.get_weights().items():
            np.testing.assert_array_equal(loaded.get_layer(layer.name).get_weights()[key], value)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    # the next step is the same as the original model's
    a = model.train_on_batch(x[:16], y[:16])
    b = loaded.train_on_batch(x[:16], y[:16])
    assert a == b


def test_backward_before_forward_is_an_error():
    model = residual_model()
    with pytest.raises(ValueError, match="backward called before forward"):
        model.backward(np.zeros((2, 4), np.float32))


def test_forward_leaves_every_branch_input_untouched():
    """No node may change an array another node still reads (in-place ReLU on a skip)."""
    x = cnnumpy.Input((4, 4, 2), dtype="float64")
    h = layers.Conv2D(2, 1, name="c")(x)
    y = layers.Add()([layers.ReLU()(h), layers.Activation("relu")(h), h])
    model = cnnumpy.Model(x, y)
    xs = np.random.default_rng(0).standard_normal((3, 4, 4, 2))
    z = model.layers[1].forward(xs)
    expected = 2 * np.maximum(z, 0) + z
    np.testing.assert_allclose(model.forward(xs), expected, rtol=1e-12)


def test_the_readme_residual_quickstart_runs():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Graphs: residual blocks")[1]
    code = section.split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 11
    (x_train, y_train), _ = cnnumpy.datasets.load_mnist_sample()
    cnnumpy.set_seed(0)
    scope = {"cnnumpy": cnnumpy, "layers": layers, "x_train": x_train[:128],
             "y_train": y_train[:128], "print": lambda *a: None}
    exec(code, scope)
    model = scope["model"]
    assert isinstance(model, cnnumpy.Model) and model.output_shape == (10,)
    assert isinstance(model.layers[4], layers.Add)
