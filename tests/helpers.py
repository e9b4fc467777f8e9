"""Shared test helpers: finite-difference gradient checks and torch conversions."""

from __future__ import annotations

import numpy as np

import cnnumpy

EPS = 1e-6
ATOL = 1e-5
RTOL = 1e-3


def numerical_grad(f, x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f()`` with respect to ``x``.

    ``x`` is perturbed in place, one element at a time, and restored.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_layer_gradients(layer, x: np.ndarray, training: bool = False, seed: int = 0) -> None:
    """Check ``layer.backward`` against central differences, for the input and every param.

    The scalar is ``sum(forward(x) * r)`` for a fixed random ``r``, so every output element
    contributes with its own weight. The library's generator is reseeded before each forward
    pass, so layers that draw random numbers (Dropout) see the same draws every time.
    """
    assert x.dtype == np.float64, "gradient checks run in float64"

    def run():
        cnnumpy.set_seed(seed)
        return layer.forward(x, training=training)

    y = run()
    r = np.random.default_rng(1234).standard_normal(y.shape)

    def loss():
        return float(np.sum(run() * r))

    run()
    dx = layer.backward(r.copy())
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    np.testing.assert_allclose(dx, numerical_grad(loss, x), atol=ATOL, rtol=RTOL,
                               err_msg=f"{layer.label}: input gradient")
    for name, param in layer.params.items():
        np.testing.assert_allclose(grads[name], numerical_grad(loss, param), atol=ATOL,
                                   rtol=RTOL, err_msg=f"{layer.label}: gradient of {name!r}")


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def hwio_to_oihw(k: np.ndarray) -> np.ndarray:
    """cnnumpy kernel (kh, kw, in, out) to PyTorch weight (out, in, kh, kw)."""
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))
