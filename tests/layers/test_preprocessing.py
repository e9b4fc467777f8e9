"""Augmentation layers: naive per-image references, inference identity, determinism,
exact backward passes (finite differences), PyTorch's grid_sample for rotation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import check_layer_gradients, nchw_to_nhwc, nhwc_to_nchw

import cnnumpy
from cnnumpy import layers
from cnnumpy.functional.augment import rotation_taps, sample
from cnnumpy.layers.preprocessing import (
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
)

torch = pytest.importorskip("torch")

# Several configurations per layer: (factory, per-sample input shape).
CASES = {
    "flip_h": (lambda: RandomFlip(), (4, 5, 2)),
    "flip_v": (lambda: RandomFlip("vertical"), (4, 5, 2)),
    "flip_hv": (lambda: RandomFlip("horizontal_and_vertical"), (4, 5, 2)),
    "translate": (lambda: RandomTranslation(0.4, 0.5), (5, 6, 2)),
    "translate_pair_fill": (lambda: RandomTranslation((-0.2, 0.6), (0.0, 0.3), 1.5), (5, 6, 2)),
    "crop_same": (lambda: RandomCrop(5, 6, padding=2), (5, 6, 2)),
    "crop_smaller": (lambda: RandomCrop(3, 4), (5, 6, 2)),
    "crop_larger": (lambda: RandomCrop(7, 6, padding=1), (5, 6, 2)),
    "rotate": (lambda: RandomRotation(0.1), (5, 6, 2)),
    "rotate_fill": (lambda: RandomRotation((-0.2, 0.3), fill_value=0.7), (6, 5, 1)),
    "rotate_nearest": (lambda: RandomRotation(0.2, interpolation="nearest"), (5, 6, 2)),
    "contrast": (lambda: RandomContrast(0.5), (4, 5, 3)),
    "contrast_pair": (lambda: RandomContrast((0.2, 0.9)), (4, 5, 3)),
    "erase": (lambda: layers.RandomErasing(1.0), (5, 6, 2)),
    "erase_fill": (lambda: layers.RandomErasing(0.7, (0.1, 0.6), (0.5, 2.0), 0.3), (6, 5, 1)),
}


def randn(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run(layer, x, seed=0, training=True):
    cnnumpy.set_seed(seed)
    return layer(x, training=training)


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


# ----- the contract shared by all --------------------------------------------------------------
def test_shapes_dtype_and_inference(case):
    factory, shape = case
    layer = factory()
    x = randn((3, *shape), dtype=np.float32)
    y = run(layer, x)
    assert y.shape == (3, *layer.compute_output_shape(shape)) and y.dtype == np.float32
    assert layer.compute_output_shape((None, *shape)) == (None, *y.shape[1:])
    assert layer.backward(np.ones_like(y)).shape == x.shape
    out = layer(x)  # inference
    assert out.shape == y.shape
    if out.shape == x.shape:
        np.testing.assert_array_equal(out, x)
        dy = randn(x.shape, 1, np.float32)
        np.testing.assert_array_equal(layer.backward(dy), dy)


def test_gradients_match_finite_differences(case):
    factory, shape = case
    for training in (True, False):
        layer = factory()
        layer.dtype = np.dtype(np.float64)
        check_layer_gradients(layer, randn((2, *shape), 4), training=training, seed=3)


def test_same_seed_same_draws_other_seed_other_draws(case):
    factory, shape = case
    layer = factory()
    x = randn((8, *shape))
    np.testing.assert_array_equal(run(layer, x, 5), run(layer, x, 5))
    assert not np.array_equal(run(layer, x, 5), run(layer, x, 6))


def test_each_image_gets_its_own_draw(case):
    factory, shape = case
    x = np.repeat(randn((1, *shape)), 12, axis=0)
    y = run(factory(), x).reshape(12, -1)
    assert len(np.unique(y.round(12), axis=0)) > 1


def test_config_round_trip(case):
    factory, shape = case
    layer = factory()
    layer.build(shape)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = randn((4, *shape))
    np.testing.assert_array_equal(run(clone, x), run(layer, x))


def test_inside_a_model_predict_ignores_them_and_fit_trains():
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([
        RandomFlip(input_shape=(6, 6, 1)), RandomCrop(6, 6, padding=1),
        layers.Conv2D(2, 3, activation="relu"), RandomRotation(0.05), RandomContrast(0.2),
        RandomTranslation(0.2, 0.2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = randn((12, 6, 6, 1)), np.arange(12) % 3
    plain = cnnumpy.Sequential([layers.Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)),
                                layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.build()
    plain.build()
    for src, dst in zip([model.layers[2], model.layers[7]], plain.layers[::2], strict=True):
        dst.set_weights(src.get_weights())
    np.testing.assert_allclose(model.predict(x), plain.predict(x), rtol=1e-6)
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.layers[0].backward(np.ones((4, 6, 6, 1))) is None  # nobody needs it


# ----- naive per-image references --------------------------------------------------------------
def naive_shift(img, dr, dc, fill):
    """out[r, c] = img[r - dr, c - dc], or fill outside: one pixel at a time."""
    h, w, _ = img.shape
    out = np.full_like(img, fill)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dr < h and 0 <= c - dc < w:
                out[r, c] = img[r - dr, c - dc]
    return out


def naive_crop(img, top, left, height, width, padding):
    h, w, ch = img.shape
    padded = np.zeros((h + 2 * padding, w + 2 * padding, ch))
    padded[padding:padding + h, padding:padding + w] = img
    return padded[top:top + height, left:left + width]


def matching(candidates, out):
    return [key for key, ref in candidates.items() if np.array_equal(ref, out)]


@pytest.mark.parametrize("mode, allowed", [
    ("horizontal", {"none", "h"}), ("vertical", {"none", "v"}),
    ("horizontal_and_vertical", {"none", "h", "v", "hv"})])
def test_flip_against_a_per_image_reference(mode, allowed):
    x = randn((40, 3, 4, 2))
    y = run(RandomFlip(mode), x)
    seen = []
    for img, out in zip(x, y, strict=True):
        candidates = {"none": img, "h": img[:, ::-1], "v": img[::-1], "hv": img[::-1, ::-1]}
        found = matching(candidates, out)
        assert len(found) == 1 and found[0] in allowed
        seen.append(found[0])
    assert set(seen) == allowed


def test_translation_against_a_per_image_reference():
    x = randn((150, 5, 4, 1))
    y = run(RandomTranslation((-0.4, 0.2), 0.5, fill_value=-7.0), x)
    seen = set()
    for img, out in zip(x, y, strict=True):
        candidates = {(dr, dc): naive_shift(img, dr, dc, -7.0)
                      for dr in range(-5, 6) for dc in range(-4, 5)}
        found = matching(candidates, out)
        assert len(found) == 1
        seen.add(found[0])
    assert seen == {(dr, dc) for dr in range(-2, 2) for dc in range(-2, 3)}


def test_crop_against_a_per_image_reference():
    x = randn((60, 4, 5, 2))
    y = run(RandomCrop(3, 5, padding=1), x)
    seen = set()
    for img, out in zip(x, y, strict=True):
        candidates = {(t, u): naive_crop(img, t, u, 3, 5, 1) for t in range(4) for u in range(3)}
        found = matching(candidates, out)
        assert len(found) == 1
        seen.add(found[0])
    assert seen == {(t, u) for t in range(4) for u in range(3)}
    np.testing.assert_array_equal(RandomCrop(2, 3, padding=1)(x),
                                  np.stack([naive_crop(i, 2, 2, 2, 3, 1) for i in x]))  # center


# ----- rotation --------------------------------------------------------------------------------
def test_a_quarter_turn_is_rot90_counter_clockwise():
    x = randn((3, 5, 5, 2))
    for interpolation in ("bilinear", "nearest"):
        y = run(RandomRotation((0.25, 0.25), interpolation=interpolation), x)
        np.testing.assert_allclose(y, np.rot90(x, 1, axes=(1, 2)), atol=1e-12)
    np.testing.assert_allclose(run(RandomRotation(0.0), x), x, atol=1e-15)


@pytest.mark.parametrize("shape", [(7, 7), (6, 9)])
def test_bilinear_rotation_matches_torch_grid_sample(shape):
    h, w = shape
    x = randn((4, h, w, 3))
    angles = np.array([0.3, -0.2, 1.0, 2.5])
    taps = rotation_taps(angles, h, w, "bilinear")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    src_x, src_y = cos * xx - sin * yy + cx, sin * xx + cos * yy + cy
    grid = np.stack([src_x / (w - 1) * 2 - 1, src_y / (h - 1) * 2 - 1], axis=-1)
    expected = torch.nn.functional.grid_sample(
        torch.tensor(nhwc_to_nchw(x), dtype=torch.float64), torch.tensor(grid),
        mode="bilinear", padding_mode="zeros", align_corners=True)
    np.testing.assert_allclose(sample(x, taps), nchw_to_nhwc(expected.numpy()), atol=1e-10)
    shifted = sample(x - 0.7, taps) + 0.7  # fill_value f = rotate (x - f) with zeros, plus f
    np.testing.assert_allclose(sample(x, taps, fill=0.7), shifted, atol=1e-10)


def test_rotation_draws_angles_in_the_range():
    x = randn((200, 4, 4, 1))
    layer = RandomRotation((-0.05, 0.1))
    y = run(layer, x, seed=9)
    angles = np.random.default_rng(9).uniform(-0.05, 0.1, 200) * 2 * math.pi
    np.testing.assert_array_equal(y, sample(x, rotation_taps(angles, 4, 4, "bilinear")))


# ----- contrast --------------------------------------------------------------------------------
def test_contrast_against_a_per_image_reference():
    x = randn((50, 3, 4, 2)) + 3.0
    y = run(RandomContrast((0.3, 0.6)), x)
    factors = []
    for img, out in zip(x, y, strict=True):
        mean = img.mean(axis=(0, 1))
        c = (out - mean)[0, 0, 0] / (img - mean)[0, 0, 0]
        np.testing.assert_allclose(out, (img - mean) * c + mean, atol=1e-12)
        factors.append(c)
    assert 0.7 <= min(factors) < 0.8 and 1.5 < max(factors) <= 1.6


# ----- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: RandomFlip("diagonal"), "RandomFlip: mode.*mode='diagonal'"),
    (lambda: RandomTranslation(1.5, 0.1), "RandomTranslation: height_factor.*=1.5"),
    (lambda: RandomTranslation(0.1, (0.3, 0.1)), r"width_factor=\(0.3, 0.1\)"),
    (lambda: RandomTranslation(0.1, -0.1), "width_factor=-0.1"),
    (lambda: RandomTranslation(0.1, 0.1, fill_value="0"), "fill_value='0'"),
    (lambda: RandomCrop(0, 3), "RandomCrop: height.*height=0"),
    (lambda: RandomCrop(3, 2.5), "width=2.5"),
    (lambda: RandomCrop(3, 3, padding=-1), "padding=-1"),
    (lambda: RandomRotation(math.nan), "RandomRotation: factor.*factor=nan"),
    (lambda: RandomRotation([0.1]), r"factor=\[0.1\]"),
    (lambda: RandomRotation(0.1, interpolation="cubic"), "interpolation='cubic'"),
    (lambda: RandomContrast(1.5), "RandomContrast: factor.*factor=1.5"),
    (lambda: RandomContrast((-0.1, 0.2)), r"factor=\(-0.1, 0.2\)"),
    (lambda: RandomContrast(True), "factor=True"),
])
def test_bad_arguments_quote_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_impossible_input_shapes_name_the_layer():
    with pytest.raises(ValueError, match=r"RandomFlip .*\(height, width, channels\)"):
        RandomFlip().build((5, 4))
    with pytest.raises(ValueError, match=r"RandomCrop .*6x4 window does not fit.*5x4"):
        RandomCrop(6, 4).build((5, 4, 1))
    RandomCrop(7, 4, padding=1).build((5, 4, 1))
