"""The ready-made models: vgg-small's structure, its augmentation, one step on real images."""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers, models
from cnnumpy.datasets import load_mnist_sample


def test_vgg_small_pools_its_one_full_resolution_convolution_before_normalizing():
    model = models.get("vgg-small", (28, 28, 1), 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:4] == ["Conv2D", "MaxPool2D", "BatchNormalization", "Activation"]
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 64, 64, 128]
    assert all(c.kernel_size == (3, 3) and not c.use_bias for c in convs)  # BN has the shift
    assert kinds.count("BatchNormalization") == 4 and kinds.count("Dropout") == 2
    assert kinds[-1] == "Dense" and model.output_shape == (10,)
    assert 300_000 < model.count_params() < 500_000


@pytest.mark.parametrize("flip, shift, erase, front", [
    (True, True, False, ["RandomFlip", "RandomTranslation"]),
    (False, True, False, ["RandomTranslation"]),
    (True, False, False, ["RandomFlip"]),
    (True, True, True, ["RandomFlip", "RandomTranslation", "RandomErasing"]),
    (False, False, True, ["RandomErasing"]),
])
def test_augmentation_adds_shifts_and_optional_flips_that_vanish_at_inference(flip, shift,
                                                                             erase, front):
    base = models.get("vgg-small", (28, 28, 1), 10)
    model = models.with_augmentation(base, flip=flip, shift=shift, erase=erase)
    model.build()  # the first layer carries the input shape
    assert [type(layer).__name__ for layer in model.layers[:len(front)]] == front
    assert model.layers[len(front):] == base.layers and model.name == base.name
    x = cnnumpy.backend.rng().random((3, 28, 28, 1), dtype=np.float32)
    for layer in model.layers[:len(front)]:
        assert layer.forward(x, training=False) is x


def test_augmentation_shifts_by_the_share_of_the_image_asked_for():
    base = models.get("lenet", (28, 28, 1), 4)
    x = np.zeros((400, 28, 28, 1), np.float32)
    x[:, 14, 14] = 1  # one bright pixel: where it lands is the shift
    for shift, most in ((0.05, 1), (True, 2), (0.25, 7)):
        front = models.with_augmentation(base, flip=False, shift=shift).layers[0]
        assert type(front).__name__ == "RandomTranslation"
        rows, cols = np.nonzero(front.forward(x, training=True)[..., 0])[1:]
        assert set(rows - 14) == set(cols - 14) == set(range(-most, most + 1))
    assert models.with_augmentation(base, flip=False, shift=0.0).layers == base.layers
    for bad in (1.0, -0.1, "0.05", None):
        with pytest.raises(ValueError, match=r"with_augmentation: shift must be True, False or "
                                             r"a share of the image in \[0, 1\), received "
                                             rf"shift={re.escape(repr(bad))}"):
            models.with_augmentation(base, shift=bad)


def test_predict_mirrored_averages_each_image_and_its_mirror():
    cnnumpy.set_seed(0)
    model = models.with_augmentation(models.get("lenet", (12, 10, 1), 4), shift=False)
    model.build()
    x = cnnumpy.backend.rng().random((5, 12, 10, 1), dtype=np.float32)
    x[:, :, :3] += 1  # not mirror-symmetric: each image's two views differ
    expected = (model.predict(x) + model.predict(x[:, :, ::-1])) / 2
    got = models.predict_mirrored(model, x, batch_size=2)
    assert got.shape == (5, 4) and np.allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, model.predict(x), atol=1e-4)
    assert models.flips_horizontally(model)
    assert not models.flips_horizontally(models.get("lenet", (12, 10, 1), 4))
    vertical = cnnumpy.Sequential([layers.RandomFlip("vertical", input_shape=(12, 10, 1)),
                                   layers.Flatten(), layers.Dense(2)])
    assert not models.flips_horizontally(vertical)
    with pytest.raises(ValueError, match=r"predict_mirrored: x must be images \(N, H, W, C\), "
                                         r"received shape \(12, 10\)"):
        models.predict_mirrored(model, x[0, :, :, 0])


def training_loss(model: cnnumpy.Sequential, x: np.ndarray, y: np.ndarray) -> float:
    cnnumpy.set_seed(1)  # the same augmentation draws and dropout masks at every call
    return float(model.loss(y, model.forward(x, training=True)))


def test_one_training_step_on_real_images_lowers_the_loss():
    (x, y), _ = load_mnist_sample()  # real 28x28 digits bundled with the package
    x, y = x[:32], y[:32]
    cnnumpy.set_seed(0)
    model = models.with_augmentation(models.get("vgg-small", x.shape[1:], 10))
    model.compile(cnnumpy.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    before = training_loss(model, x, y)
    cnnumpy.set_seed(1)
    model.train_on_batch(x, y)
    after = training_loss(model, x, y)
    assert np.isfinite(before) and after < before - 0.05, (before, after)
