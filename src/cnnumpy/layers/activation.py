"""Activation layers with arguments: ReLU (clipped, leaky, thresholded), as in Keras."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional import activations
from cnnumpy.layers.base import Layer


def _number(value: Any, name: str, where: str, allow_none: bool = False) -> float | None:
    """``value`` as a float if it is a finite number >= 0 (or None if allowed)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value < 0:
        expected = "None or a number >= 0" if allow_none else "a number >= 0"
        raise ValueError(f"{where}: {name} must be {expected}, received {name}={value!r}")
    return float(value)


class ReLU(Layer):
    """Rectified linear unit with Keras' options:

        y = min(x, max_value)                 where x > threshold
        y = negative_slope * (x - threshold)  elsewhere

    ``ReLU()`` is ``max(x, 0)``, ``ReLU(6.0)`` is ReLU6, ``ReLU(negative_slope=0.1)`` is a
    leaky ReLU.

    Args:
        max_value: the largest output (a number >= 0), or None for no limit.
        negative_slope: the slope at or below the threshold (a number >= 0).
        threshold: inputs at or below it take the negative slope (a number >= 0).
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        any shape -> the same shape.
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        where = type(self).__name__
        self.max_value = _number(max_value, "max_value", where, allow_none=True)
        self.negative_slope = _number(negative_slope, "negative_slope", where)
        self.threshold = _number(threshold, "threshold", where)
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self._x: Any = None

    def _options(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}

    def call(self, x: Any, training: bool) -> Any:
        self._x = x
        return activations.general_relu(x, **self._options())

    def call_backward(self, dy: Any) -> Any:
        if self._x is None:
            raise ValueError(f"{self.label}: backward called before forward")
        return activations.general_relu_backward(dy, self._x, **self._options())

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._options()}
