"""Activation functions and their gradients, as pure functions.

Each activation is a pair: ``forward(z) -> y`` and ``backward(dy, z, y) -> dz``. The backward
receives both the input and the output so that each formula can use whichever is cheaper.
All formulas are written to be overflow-free for large inputs (``sigmoid(+-1000)`` is exactly
1 and 0, ``softmax`` subtracts the row maximum).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from cnnumpy.backend import xp

LEAKY_SLOPE = 0.01
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_C = 0.044715


def relu(z: np.ndarray) -> np.ndarray:
    """``max(z, 0)``.

    Shape:
        Any shape; ``y`` has the shape of ``z``.

    Example:
        >>> import numpy as np
        >>> relu(np.array([-1.0, 0.0, 2.0]))
        array([0., 0., 2.])
    """
    return xp.maximum(z, 0)


def relu_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`relu`: ``dy`` where ``z > 0``, else 0."""
    return dy * (z > 0)


def leaky_relu(z: np.ndarray) -> np.ndarray:
    """``z`` where ``z > 0``, else ``LEAKY_SLOPE * z``."""
    return xp.where(z > 0, z, z * z.dtype.type(LEAKY_SLOPE))


def leaky_relu_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`leaky_relu`: ``dy`` where ``z > 0``, else ``LEAKY_SLOPE * dy``."""
    return xp.where(z > 0, dy, dy * dy.dtype.type(LEAKY_SLOPE))


def elu(z: np.ndarray) -> np.ndarray:
    """``z`` where ``z > 0``, else ``exp(z) - 1``."""
    return xp.where(z > 0, z, xp.expm1(xp.minimum(z, 0)))


def elu_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`elu`: ``dy`` where ``z > 0``, else ``dy * (y + 1)``."""
    return xp.where(z > 0, dy, dy * (y + 1))


def gelu(z: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (PyTorch ``approximate="tanh"``, Keras ``approximate=True``)."""
    inner = _SQRT_2_OVER_PI * (z + _GELU_C * z**3)
    return 0.5 * z * (1 + xp.tanh(inner))


def gelu_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`gelu` (tanh approximation)."""
    inner = _SQRT_2_OVER_PI * (z + _GELU_C * z**3)
    t = xp.tanh(inner)
    dinner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * z**2)
    return dy * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * dinner)


def relu6(z: np.ndarray) -> np.ndarray:
    """``min(max(z, 0), 6)``, as in MobileNet (PyTorch ``relu6``, Keras ``"relu6"``)."""
    return xp.clip(z, 0, 6)


def relu6_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`relu6`: ``dy`` where ``0 < z < 6``, else 0."""
    return dy * ((z > 0) & (z < 6))


def swish(z: np.ndarray) -> np.ndarray:
    """``z * sigmoid(z)``, also called SiLU (PyTorch ``silu``, Keras ``"swish"``/``"silu"``)."""
    return z * sigmoid(z)


def swish_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`swish`: ``dy * s * (1 + z * (1 - s))`` with ``s = sigmoid(z)``."""
    s = sigmoid(z)
    return dy * (s * (1 + z * (1 - s)))


def general_relu(z: np.ndarray, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0) -> np.ndarray:
    """Keras' ReLU with options (``threshold >= 0``):

        y = min(z, max_value)                 where z > threshold
        y = negative_slope * (z - threshold)  elsewhere

    Plain ReLU and ReLU6 (no slope, no threshold) take one pass (``clip``): about 7x faster
    than the general form's four.
    """
    if negative_slope == 0 and threshold == 0 and (max_value is None or max_value >= 0):
        if max_value is None:
            return xp.maximum(z, z.dtype.type(0))
        return xp.clip(z, z.dtype.type(0), z.dtype.type(max_value))
    above = xp.minimum(z, z.dtype.type(max_value)) if max_value is not None else z
    below = (z - z.dtype.type(threshold)) * z.dtype.type(negative_slope)
    return xp.where(z > threshold, above, below)


def general_relu_backward(dy: np.ndarray, z: np.ndarray,
                          max_value: float | None = None, negative_slope: float = 0.0,
                          threshold: float = 0.0) -> np.ndarray:
    """The gradient of :func:`general_relu`: 1 between ``threshold`` and ``max_value``,
    ``negative_slope`` at or below ``threshold``, 0 at or above ``max_value``."""
    if negative_slope == 0:  # ReLU, ReLU6: a mask, no slope term
        inside = z > threshold
        if max_value is not None:
            inside &= z < max_value
        return dy * inside
    inside = z > threshold
    if max_value is not None:
        inside &= z < max_value
    slope = xp.where(z > threshold, 0, negative_slope).astype(dy.dtype, copy=False)
    return dy * (inside + slope)


def exp_no_underflow(a: np.ndarray) -> np.ndarray:
    """``exp(a)``, with ``a`` clipped from below so the result never underflows (no warning).

    Below ``log(tiny)`` the true value is smaller than the smallest normal number anyway.
    """
    return xp.exp(xp.maximum(a, _log_tiny(a.dtype)))


def _log_tiny(dtype: np.dtype) -> np.floating:
    return dtype.type(np.log(np.finfo(dtype).tiny))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, warning-free: ``sigmoid(+-1000)`` is exactly 1 and 0."""
    e = exp_no_underflow(-xp.abs(z))
    y = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return xp.where(z < _log_tiny(z.dtype), 0, y).astype(z.dtype, copy=False)


def sigmoid_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`sigmoid`: ``dy * y * (1 - y)``."""
    return dy * y * (1 - y)


def tanh(z: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    return xp.tanh(z)


def tanh_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`tanh`: ``dy * (1 - y**2)``."""
    return dy * (1 - y * y)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(z))`` computed with the log-sum-exp shift: finite for any finite input."""
    shifted = z - xp.max(z, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(exp_no_underflow(shifted), axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the maximum: no overflow, rows sum to 1.

    Shape:
        Any shape; ``y`` has the shape of ``z``.

    Example:
        >>> import numpy as np
        >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]]))
        array([[0.5, 0.5],
               [1. , 0. ]])
    """
    shifted = z - xp.max(z, axis=axis, keepdims=True)
    e = xp.where(shifted < _log_tiny(z.dtype), 0, exp_no_underflow(shifted)).astype(z.dtype)
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`softmax` along the last axis (the Jacobian-vector product)."""
    return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


def linear(z: np.ndarray) -> np.ndarray:
    """The identity: no activation."""
    return z


def linear_backward(dy: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of :func:`linear`: ``dy`` unchanged."""
    return dy


class ActivationFn(NamedTuple):
    """A named activation: its forward and backward functions."""

    name: str
    forward: Callable[..., np.ndarray]
    backward: Callable[..., np.ndarray]


ACTIVATIONS: dict[str, ActivationFn] = {
    fn.name: fn
    for fn in (
        ActivationFn("relu", relu, relu_backward),
        ActivationFn("leaky_relu", leaky_relu, leaky_relu_backward),
        ActivationFn("relu6", relu6, relu6_backward),
        ActivationFn("elu", elu, elu_backward),
        ActivationFn("gelu", gelu, gelu_backward),
        ActivationFn("sigmoid", sigmoid, sigmoid_backward),
        ActivationFn("tanh", tanh, tanh_backward),
        ActivationFn("swish", swish, swish_backward),
        ActivationFn("silu", swish, swish_backward),
        ActivationFn("softmax", softmax, softmax_backward),
        ActivationFn("linear", linear, linear_backward),
    )
}


def get(name: str | None, where: str = "activation") -> ActivationFn | None:
    """Look an activation up by name; ``None`` and "linear" both mean no activation.

    Raises:
        ValueError: naming ``where``, the accepted names and what was received.
    """
    if name is None:
        return None
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"{where}: unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    return None if name == "linear" else ACTIVATIONS[name]
