"""The prototype notebook's code, through cnnumpy.compat with only its import line changed."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

import cnnumpy
from cnnumpy.compat import CNN, Activation, Conv2D, Dense, Flatten, MaxPool2D


# ---- from the notebook, unchanged --------------------------------------------------------
def generate_dummy_data(n_samples=100, img_size=(28, 28, 1)):
    # Generate dummy images (random noise)
    X = np.random.random((n_samples, *img_size))  # noqa: NPY002
    # Generate dummy labels (binary classification)
    y = np.random.randint(0, 2, (n_samples, 1))  # noqa: NPY002
    return X, y


def create_simple_cnn():
    model = CNN(learning_rate=0.001)
    model.add(Conv2D(input_shape=(28, 28, 1), kernel_size=(3, 3), depth=8))
    model.add(Activation('relu'))
    model.add(MaxPool2D(pool_size=(2, 2)))
    model.add(Conv2D(input_shape=(13, 13, 8), kernel_size=(3, 3), depth=16))
    model.add(Activation('relu'))
    model.add(MaxPool2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(16 * 5 * 5, 128, activation='relu'))
    model.add(Dense(128, 1, activation='sigmoid'))
    return model
# -------------------------------------------------------------------------------------------


def test_the_notebook_demo_runs_and_its_loss_falls(capsys):
    np.random.seed(0)  # noqa: NPY002 (the notebook's own data uses it)
    cnnumpy.set_seed(0)
    X, y = generate_dummy_data(n_samples=100)
    model = create_simple_cnn()
    model.train(X, y, epochs=50, batch_size=10)
    predictions = model.predict(X[:5])
    assert predictions.shape == (5, 1)
    lines = capsys.readouterr().out.splitlines()
    losses = [float(m.group(1)) for line in lines if (m := re.search(r"Loss: ([\d.]+)", line))]
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [1, 11, 21, 31, 41, 50]
    assert losses[-1] < 0.5 * losses[0]
    # It memorized its 100 noise images, as the notebook's did.
    accuracy = np.mean((model.predict(X) > 0.5) == y)
    assert accuracy > 0.9


def test_single_image_predict_and_safe_save_load(tmp_path):
    cnnumpy.set_seed(1)
    model = create_simple_cnn()
    x = np.random.default_rng(0).random((28, 28, 1))
    out = model.predict(x)
    assert out.shape == (1, 1)
    path = tmp_path / "model.pkl"
    model.save_model(str(path))
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle, whatever the name
    loaded = CNN.load_model(str(path))
    np.testing.assert_array_equal(loaded.predict(x), out)
    assert loaded.learning_rate == pytest.approx(0.001)


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_model_refuses_a_pickle(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(cnnumpy.ModelFormatError, match="this is a pickle"):
        CNN.load_model(str(path))
    assert not marker.exists()


def test_compat_layers_are_library_layers():
    layer = Dense(4, 2, activation="leaky_relu")
    assert isinstance(layer, cnnumpy.layers.Dense)
    assert layer.input_shape == (4,) and layer.activation == "leaky_relu"
    conv = Conv2D((5, 5, 2), (3, 3), 4)
    conv.build((5, 5, 2))
    assert conv.params["kernel"].shape == (3, 3, 2, 4)
