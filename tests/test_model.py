"""Sequential: building, the training loop, fused losses, determinism and input errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import numerical_grad

import cnnumpy
from cnnumpy import layers
from cnnumpy.callbacks import Callback


def small_cnn(activation="softmax", dtype=None):
    return cnnumpy.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(16, activation="relu"),
        layers.Dense(3, activation=activation),
    ], dtype=dtype)


def toy_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    for c in range(3):  # each class lights up its own band of rows
        x[y == c, 2 * c: 2 * c + 3, :, 0] += 1.0
    return x, y


def test_shape_inference_and_summary():
    model = small_cnn()
    model.build()
    assert model.output_shape == (3,)
    assert model.layers[3].params["kernel"].shape == (4 * 4 * 4, 16)
    text = model.summary(print_fn=None)
    assert "Conv2D" in text and "(None, 4, 4, 4)" in text
    assert f"Total params: {model.count_params():,}" in text
    assert model.count_params() == (9 * 4 + 4) + (64 * 16 + 16) + (16 * 3 + 3)


def test_builds_lazily_and_follows_a_float64_input():
    model = cnnumpy.Sequential([layers.Flatten(), layers.Dense(2)])
    out = model.predict(np.zeros((3, 2, 2, 1), dtype=np.float64))
    assert out.shape == (3, 2) and out.dtype == np.float64
    assert model.layers[1].params["kernel"].dtype == np.float64


def _issue_model():
    return cnnumpy.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8, 1)), layers.Flatten(),
                               layers.Dense(3)])


def test_a_first_layer_with_input_shape_builds_the_model_at_construction(tmp_path):
    model = _issue_model()
    assert model.built and model.layers[2].params["kernel"].shape == (6 * 6 * 4, 3)
    model.compile("adam", "sparse_categorical_crossentropy")
    path = str(tmp_path / "untrained.safetensors")
    model.save(path)  # before any training
    x = toy_data(5)[0]
    np.testing.assert_array_equal(cnnumpy.load_model(path).predict(x), model.predict(x))
    assert model.count_params() == (9 * 4 + 4) + (144 * 3 + 3)
    assert "(None, 6, 6, 4)" in model.summary(print_fn=None)
    model.build((None, 8, 8, 1))  # the shape it has: nothing to do
    with pytest.raises(ValueError, match=r"built for inputs \(8, 8, 1\), received "
                                         r"build\(input_shape=\(9, 9, 1\)\)"):
        model.build((9, 9, 1))


def test_add_builds_each_layer_and_refuses_one_that_does_not_fit():
    model = cnnumpy.Sequential()
    model.add(layers.Conv2D(4, 3, input_shape=(8, 8, 1)))
    assert model.built
    model.add(layers.Flatten())
    model.add(layers.Dense(3))
    assert model.built and model.output_shape == (3,)
    conv = layers.Conv2D(2, 3)
    with pytest.raises(ValueError, match=r"Sequential.add: Conv2D '.*' does not fit after the "
                                         r"layers before it: .*received \(3,\)"):
        model.add(conv)
    assert len(model.layers) == 3 and not conv.built and conv.dtype is None  # left as it was
    model.add(layers.Dense(2, input_shape=(3,)))  # a matching input_shape is fine
    with pytest.raises(ValueError, match=r"given input_shape=\(5,\), but the layer before it "
                                         r"outputs \(2,\)"):
        model.add(layers.Dense(2, input_shape=(5,)))
    assert model.output_shape == (2,)


def test_fit_learns_and_reports_history():
    cnnumpy.set_seed(0)
    x, y = toy_data(120)
    model = small_cnn()
    model.compile(cnnumpy.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=6, batch_size=16, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 6
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(x, y)
    assert result["accuracy"] > 0.9
    probs = model.predict(x[:5])
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    logs = model.train_on_batch(x[:8], y[:8])
    assert set(logs) == {"loss", "accuracy"}


def test_predict_batches_agree_and_zero_images_give_an_empty_array():
    cnnumpy.set_seed(1)
    model = small_cnn()
    x, _ = toy_data(10)
    np.testing.assert_allclose(model.predict(x, batch_size=3), model.predict(x, batch_size=10),
                               rtol=1e-6)
    empty = model.predict(np.zeros((0, 8, 8, 1), np.float32))
    assert empty.shape == (0, 3)


def _param_grads(model, x, y):
    _, loss, grad = model._forward_loss(x, y, training=True)
    model._backward(grad)
    return loss, [g.copy() for g in model.trainable_weights()[1]]


def test_whole_model_gradients_match_finite_differences_through_the_fused_loss():
    cnnumpy.set_seed(2)
    model = small_cnn(dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model._fused
    x, y = toy_data(4)
    x = x.astype(np.float64)
    _, grads = _param_grads(model, x, y)
    params, _ = model.trainable_weights()
    for p, g in zip(params, grads, strict=True):
        num = numerical_grad(lambda: model._forward_loss(x, y, training=True)[1], p)
        np.testing.assert_allclose(g, num, atol=1e-5, rtol=1e-3)


def test_fused_softmax_equals_logits_model():
    """softmax + CE(from_logits=False) trains exactly like linear + CE(from_logits=True)."""
    x, y = toy_data(40)
    weights = []
    for activation, loss in (("softmax", cnnumpy.losses.SparseCategoricalCrossentropy()),
                             (None, cnnumpy.losses.SparseCategoricalCrossentropy(True))):
        cnnumpy.set_seed(3)
        model = small_cnn(activation, dtype="float64")
        model.compile(cnnumpy.optimizers.Adam(0.01), loss)
        model.fit(x.astype(np.float64), y, epochs=2, batch_size=8, verbose=0)
        weights.append(model.layers[-1].params["kernel"].copy())
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-12, atol=1e-12)


def test_fused_loss_is_finite_for_saturated_logits():
    model = cnnumpy.Sequential([layers.Dense(3, activation="softmax", input_shape=(2,))])
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.build()
    model.layers[0].set_weights({"kernel": np.array([[1000.0, 0, -1000], [0, 0, 0]]),
                                 "bias": np.zeros(3)})
    with np.errstate(all="raise"):
        result = model.evaluate(np.array([[1.0, 0.0]], np.float32), np.array([2]))
    assert 1900 < result["loss"] < 2100


TRAIN_SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, cnnumpy
    from cnnumpy import layers
    cnnumpy.set_seed(7)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8, 8, 1)).astype(np.float32); y = rng.integers(0, 3, 40)
    model = cnnumpy.Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.Dropout(0.3), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    h = hashlib.sha256()
    for layer in model.layers:
        for k, v in sorted(layer.get_weights().items()):
            h.update(v.tobytes())
    print(h.hexdigest())
""")


def test_same_seed_gives_bit_identical_weights_in_fresh_processes():
    digests = set()
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed}, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1
    # ... and in this process, with NumPy's global random state left alone.
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    namespace: dict = {}
    exec(compile(TRAIN_SCRIPT.replace("print(", "result = ("), "<script>", "exec"), namespace)
    assert namespace["result"] in digests
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_callback_can_stop_training():
    class StopAfterTwoBatches(Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = toy_data(64)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0,
                        callbacks=[StopAfterTwoBatches()])
    assert len(history.history["loss"]) == 1
    assert model.optimizer.iterations == 2


def test_nan_loss_stops_fit_naming_epoch_and_batch():
    x, y = toy_data(32)
    x[20] = np.nan
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 3"):
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)


@pytest.mark.parametrize("x, y, error, match", [
    (np.zeros((4, 8, 8, 1)), np.zeros(3, int), ValueError, "same number of samples"),
    (np.zeros((4, 8, 8, 2)), np.zeros(4, int), ValueError, r"\(N, 8, 8, 1\)"),
    (np.zeros((4, 8, 8)), np.zeros(4, int), ValueError, r"\(N, 8, 8, 1\)"),
    (np.zeros((4, 8, 8, 1), dtype=complex), np.zeros(4, int), TypeError, "complex"),
    (np.full((4, 8, 8, 1), "x"), np.zeros(4, int), TypeError, "x must be a real-valued"),
    (np.zeros((0, 8, 8, 1)), np.zeros(0, int), ValueError, "empty"),
    (np.zeros((4, 8, 8, 1)), np.array([0, 1, 2, 3]), ValueError, "3"),
    (np.zeros((4, 8, 8, 1)), np.array([0, -1, 2, 1]), ValueError, "-1"),
])
def test_bad_fit_input_is_named(x, y, error, match):
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(error, match=match):
        model.fit(x, y, verbose=0)


def test_bad_arguments_are_named():
    model = small_cnn()
    with pytest.raises(ValueError, match="compile"):
        model.fit(np.zeros((2, 8, 8, 1)), np.zeros(2, int))
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="batch_size=0"):
        model.fit(np.zeros((2, 8, 8, 1)), np.zeros(2, int), batch_size=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(np.zeros((2, 8, 8, 1)), np.zeros(2, int), validation_split=1.5)
    with pytest.raises(TypeError, match="Layer"):
        model.add("dense")
    with pytest.raises(ValueError, match="input_shape"):
        cnnumpy.Sequential([layers.Dense(3)]).summary()
    with pytest.raises(ValueError, match=r"input_shape=\(7,\)"):
        cnnumpy.Sequential([layers.Dense(3, input_shape=(4,)),
                            layers.Dense(2, input_shape=(7,))]).build()


def test_config_round_trip():
    model = small_cnn()
    clone = cnnumpy.Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_layers_before_the_first_weights_get_no_backward_pass(monkeypatch):
    """Nothing needs the gradient with respect to the images: augmentation layers in front
    are not run backward, and the first convolution skips its input gradient."""
    from cnnumpy.layers.preprocessing import RandomTranslation

    def fail(self, dy):
        raise AssertionError("backward of a layer in front of every weight")

    monkeypatch.setattr(RandomTranslation, "call_backward", fail)
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.RandomTranslation(0.1, 0.1, input_shape=(8, 8, 1)),
                                *small_cnn().layers])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = toy_data(16)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert [layer.needs_input_grad for layer in model.layers[:3]] == [False, False, True]


def test_fit_warns_when_the_learning_rate_schedule_has_ended():
    """Extending a finished run whose cosine schedule is at 0 would silently change nothing."""
    x, y = toy_data(16)
    model = small_cnn()
    schedule = cnnumpy.optimizers.schedules.CosineDecay(0.01, decay_steps=2)
    model.compile(cnnumpy.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # 2 steps: the schedule is now at 0
    with pytest.warns(UserWarning, match=r"Sequential.fit: the learning-rate schedule "
                                         r"CosineDecay\(.*\) is at 0 from step 2"):
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, initial_epoch=1)


def test_sequential_may_start_with_an_input_as_in_keras(tmp_path):
    model = cnnumpy.Sequential([cnnumpy.Input((8, 8, 1)), layers.Conv2D(4, 3), layers.Flatten(),
                                layers.Dense(3)])
    assert model.built and model.input_shape == (8, 8, 1) and model.count_params() == 475
    model.save(tmp_path / "m.safetensors")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(cnnumpy.load_model(tmp_path / "m.safetensors").predict(x),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="Input may only come first"):
        cnnumpy.Sequential([layers.Dense(2, input_shape=(3,)), cnnumpy.Input((3,))])
    with pytest.raises(ValueError, match=r"input_shape \(4,\), but the Input before it"):
        cnnumpy.Sequential([cnnumpy.Input((3,)), layers.Dense(2, input_shape=(4,))])
