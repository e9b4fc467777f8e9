"""Losses on per-pixel predictions (segmentation): ``(N, H, W, C)`` scores with ``(N, H, W)``
integer labels or ``(N, H, W, C)`` one-hot targets, averaged over every pixel, as PyTorch's
``cross_entropy`` with its default ``reduction="mean"``; and an encoder-decoder that learns."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers as L
from cnnumpy import losses
from cnnumpy.functional.activations import sigmoid, softmax

torch = pytest.importorskip("torch")
TF = torch.nn.functional

SHAPE = (3, 4, 5, 6)  # (N, H, W, C)


def scores_and_labels(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) * 3
    labels = rng.integers(0, shape[-1], shape[:-1])
    return z, labels


def torch_value_and_grad(fn, pred):
    t = torch.from_numpy(pred.copy()).requires_grad_(True)
    value = fn(t)
    value.backward()
    return value.item(), t.grad.numpy()


def channels_first(t):
    return t.permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("labels_form", ["sparse", "sparse-last-axis-1", "one-hot"])
def test_crossentropy_per_pixel_matches_torch(from_logits, labels_form):
    z, labels = scores_and_labels()
    pred = z if from_logits else softmax(z)
    target = torch.from_numpy(labels)
    if from_logits:
        def reference(t):
            return TF.cross_entropy(channels_first(t), target)
    else:
        def reference(t):
            return TF.nll_loss(channels_first(torch.log(t)), target)
    if labels_form == "one-hot":
        loss, y = losses.CategoricalCrossentropy(from_logits), np.eye(SHAPE[-1])[labels]
    else:
        loss = losses.SparseCategoricalCrossentropy(from_logits)
        y = labels[..., None] if labels_form == "sparse-last-axis-1" else labels
    value, grad = loss.value_and_grad(y, pred)
    want_value, want_grad = torch_value_and_grad(reference, pred)
    assert abs(value - want_value) < 1e-10
    assert grad.shape == pred.shape
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_crossentropy_per_pixel_matches_torch(from_logits):
    z, labels = scores_and_labels(1, (3, 4, 5, 1))
    mask = (labels[..., None] + np.random.default_rng(2).integers(0, 2, z.shape)) % 2
    pred = z if from_logits else sigmoid(z)
    target = torch.from_numpy(mask.astype(np.float64))
    if from_logits:
        def reference(t):
            return TF.binary_cross_entropy_with_logits(t, target)
    else:
        def reference(t):
            return TF.binary_cross_entropy(t, target)
    loss = losses.BinaryCrossentropy(from_logits)
    for y in (mask, mask[..., 0]):  # (N, H, W, 1) or (N, H, W) masks
        value, grad = loss.value_and_grad(y, pred)
        want_value, want_grad = torch_value_and_grad(reference, pred)
        assert abs(value - want_value) < 1e-10
        np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-10)


def test_per_sample_weights_weigh_every_pixel_of_their_image():
    z, labels = scores_and_labels(3)
    weights = np.array([0.5, 2.0, 0.0])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_grad(labels, z, weights)
    per_pixel = TF.cross_entropy(channels_first(torch.from_numpy(z)), torch.from_numpy(labels),
                                 reduction="none").numpy()  # (N, H, W)
    expected = float(np.mean(weights[:, None, None] * per_pixel))
    assert abs(value - expected) < 1e-12
    np.testing.assert_array_equal(grad[2], 0)
    np.testing.assert_allclose(grad[0], loss.backward(labels[:1], z[:1])[0] / 3 * 0.5, atol=1e-15)


@pytest.mark.parametrize("loss, y", [
    (losses.SparseCategoricalCrossentropy(), np.zeros((3, 4, 4), int)),
    (losses.SparseCategoricalCrossentropy(), np.zeros((3, 4, 5, 2), int)),
    (losses.CategoricalCrossentropy(), np.zeros((3, 4, 5, 5))),
    (losses.CategoricalCrossentropy(), np.zeros((3, 4, 5))),
])
def test_labels_that_do_not_fit_the_pixels_are_refused(loss, y):
    with pytest.raises(ValueError, match=type(loss).__name__):
        loss(y, np.full(SHAPE, 1 / 6))


def shapes_on_noise(n, size=12, seed=0):
    """Images of noise with one bright rectangle each; the mask marks the rectangle."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, (n, size, size, 1)).astype(np.float32)
    masks = np.zeros((n, size, size), np.int64)
    top, left = rng.integers(0, size - 4, (2, n))
    height, width = rng.integers(3, 6, (2, n))
    rows, cols = np.arange(size)[None, :, None], np.arange(size)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + height)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + width)[:, None, None]))
    masks[inside] = 1
    x[inside] += 1.5
    return x, masks


def test_an_encoder_decoder_learns_a_segmentation():
    """Per-pixel sparse labels through fit and evaluate: the test pixels' accuracy goes from
    chance to at least 95 % (seeds 0-2 give 98 %; rectangles cover about 12 % of the pixels,
    so labelling everything background scores about 88 %)."""
    cnnumpy.set_seed(0)
    x, masks = shapes_on_noise(512, seed=1)
    x_test, masks_test = shapes_on_noise(128, seed=2)
    background = 1 - masks_test.mean()
    model = cnnumpy.Sequential([
        L.Conv2D(8, 3, padding="same", activation="relu", input_shape=(12, 12, 1)),
        L.MaxPool2D(2),
        L.Conv2D(8, 3, padding="same", activation="swish"),
        L.UpSampling2D(2, interpolation="bilinear"),
        L.ZeroPadding2D(1),
        L.Conv2D(2, 3, activation="softmax"),
    ])
    model.compile(cnnumpy.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    before = model.evaluate(x_test, masks_test)
    model.fit(x, masks, epochs=4, batch_size=32, verbose=0)
    after = model.evaluate(x_test, masks_test)
    assert after["loss"] < before["loss"] / 3
    assert after["accuracy"] >= 0.95 > background
    predicted = model.predict(x_test).argmax(axis=-1)
    assert predicted.shape == masks_test.shape
    assert abs(np.mean(predicted == masks_test) - after["accuracy"]) < 1e-9


@pytest.mark.parametrize("one_hot", [False, True], ids=["sparse", "one-hot"])
def test_class_weight_with_per_pixel_labels_is_refused(one_hot):
    """class_weight weighs whole samples (as in Keras): per-pixel labels are refused by name,
    not flattened into one made-up label per image (which silently weighed one-hot masks by
    their largest pixel, and asked sparse masks for weights of classes that do not exist)."""
    x, masks = shapes_on_noise(4, size=6)
    y = np.eye(2)[masks] if one_hot else masks
    model = cnnumpy.Sequential([L.Conv2D(2, 3, padding="same", activation="softmax",
                                         input_shape=(6, 6, 1))])
    model.compile("sgd", "categorical_crossentropy" if one_hot
                  else "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class_weight takes one label per sample .* "
                                         r"received y of shape \(4, 6, 6"):
        model.fit(x, y, class_weight={0: 1.0, 1: 5.0}, verbose=0)
    model.fit(x, y, sample_weight=np.array([1.0, 5.0, 1.0, 1.0]), verbose=0)  # per image
