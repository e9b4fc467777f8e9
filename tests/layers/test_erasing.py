"""RandomErasing: each erased region is one box of the drawn size, the probability and the
noise as asked, inference untouched, errors. The shared contract (shapes, finite
differences, seeds, configs) runs in test_preprocessing.py and test_contract.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.functional.augment import box_mask


def erased(layer, x, seed=0):
    cnnumpy.set_seed(seed)
    y = layer(x, training=True)
    return y, (y != x).any(axis=-1)


def test_box_mask_equals_a_pixel_loop():
    top, left, height, width = (np.array(v) for v in ([0, 2, 4], [1, 0, 3], [3, 1, 2],
                                                       [2, 5, 1]))
    mask = box_mask(top, left, height, width, 6, 5)
    ref = np.zeros((3, 6, 5, 1), bool)
    for n in range(3):
        for r in range(6):
            for c in range(5):
                ref[n, r, c] = top[n] <= r < top[n] + height[n] \
                    and left[n] <= c < left[n] + width[n]
    np.testing.assert_array_equal(mask, ref)


def test_each_erased_region_is_one_box_within_scale_and_ratio():
    h, w = 20, 24
    layer = layers.RandomErasing(1.0, scale=(0.05, 0.3), ratio=(0.5, 2.0), fill_value=-1.0)
    x = np.random.default_rng(0).uniform(0, 1, (200, h, w, 3)).astype(np.float32)
    y, changed = erased(layer, x)
    assert changed.any(axis=(1, 2)).all()  # factor 1: every image
    for img, region in zip(y, changed, strict=True):
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        box = region[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.all() and region.sum() == box.size  # one full rectangle, nothing outside
        np.testing.assert_array_equal(img[region], -1.0)
        bh, bw = box.shape  # sides rounded to whole pixels: allow half a pixel each
        assert 0.05 * h * w * 0.7 <= bh * bw <= 0.3 * h * w * 1.3
        assert 0.5 * 0.6 <= bh / bw <= 2.0 / 0.6


def test_factor_is_the_probability_and_noise_fills_value_range():
    layer = layers.RandomErasing(0.3, value_range=(2.0, 3.0))
    x = np.zeros((4000, 8, 8, 2), np.float32)
    y, changed = erased(layer, x, seed=1)
    share = changed.any(axis=(1, 2)).mean()
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)
    noise = y[y != 0]
    assert noise.min() >= 2.0 and noise.max() < 3.0 and abs(noise.mean() - 2.5) < 0.01
    np.testing.assert_array_equal(erased(layers.RandomErasing(0.0), x)[0], x)


def test_gradient_is_zero_inside_the_box_and_dy_outside():
    layer = layers.RandomErasing(1.0, fill_value=5.0)
    x = np.random.default_rng(2).standard_normal((6, 7, 7, 2))
    layer.dtype = np.dtype(np.float64)
    y, changed = erased(layer, x)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, np.where(changed[..., None], 0.0, dy))


def test_inference_leaves_images_alone():
    x = np.random.default_rng(4).standard_normal((5, 6, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(layers.RandomErasing(1.0)(x), x)


@pytest.mark.parametrize("kwargs, match", [
    ({"factor": 1.5}, "RandomErasing: factor.*factor=1.5"),
    ({"factor": True}, "factor=True"),
    ({"scale": (0.0, 0.3)}, r"RandomErasing: scale.*scale=\(0.0, 0.3\)"),
    ({"scale": (0.4, 0.3)}, r"scale=\(0.4, 0.3\)"),
    ({"scale": 0.3}, "scale=0.3"),
    ({"ratio": (-1, 2)}, r"ratio=\(-1, 2\)"),
    ({"fill_value": "0"}, "fill_value='0'"),
    ({"value_range": (1, 0)}, r"value_range=\(1, 0\)"),
])
def test_bad_arguments_quote_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.RandomErasing(**kwargs)
