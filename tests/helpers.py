"""Shared test helpers: finite-difference gradient checks and torch conversions."""

from __future__ import annotations

import numpy as np

from cnnumpy.testing import ATOL, EPS, RTOL, gradient_checks, numerical_grad

__all__ = ["ATOL", "EPS", "RTOL", "numerical_grad", "check_layer_gradients"]


def check_layer_gradients(layer, x: np.ndarray, training: bool = False, seed: int = 0) -> None:
    """Assert that ``layer.backward`` matches central differences for the input and every
    param (see :func:`cnnumpy.testing.gradient_checks`; every element is checked)."""
    assert x.dtype == np.float64, "gradient checks run in float64"
    failed = [f"{layer.label}: {c.name}: {c.detail}"
              for c in gradient_checks(layer, x, training=training, seed=seed) if not c.ok]
    assert not failed, "\n".join(failed)


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def hwio_to_oihw(k: np.ndarray) -> np.ndarray:
    """cnnumpy kernel (kh, kw, in, out) to PyTorch weight (out, in, kh, kw)."""
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))
