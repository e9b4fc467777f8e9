"""general_relu's one-pass form (no slope, no threshold) and its gradient's mask form (no
slope) against Keras' definition."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional import activations

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 6.0, 5.999, 6.001, -1e-30, 1e-30]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_value", [None, 6.0, 0.0, 1.5])
def test_plain_relu_and_relu6_follow_the_definition(max_value, dtype):
    z = np.concatenate([np.random.default_rng(0).standard_normal(200) * 5,
                        SPECIAL]).astype(dtype).reshape(2, 5, 21)
    y = activations.general_relu(z, max_value)
    above = z if max_value is None else np.minimum(z, dtype(max_value))
    want = np.where(z > 0, above, 0).astype(dtype)
    want[np.isnan(z)] = np.nan
    assert y.dtype == dtype and y.shape == z.shape
    np.testing.assert_array_equal(y, want)
    assert y is not z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_value, threshold", [(None, 0.0), (6.0, 0.0), (6.0, 0.5)])
def test_gradient_without_a_slope_follows_the_definition(max_value, threshold, dtype):
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.standard_normal(200) * 5, SPECIAL]).astype(dtype)
    dy = rng.standard_normal(z.shape).astype(dtype)
    dy[:3] = [np.nan, np.inf, -1.0]
    inside = z > threshold
    if max_value is not None:
        inside = inside & (z < max_value)
    want = dy * inside.astype(dtype)
    got = activations.general_relu_backward(dy, z, max_value, 0.0, threshold)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
