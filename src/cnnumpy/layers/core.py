"""Core layers: Flatten, Dense, Activation and Dropout."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy import backend, initializers
from cnnumpy.backend import rng, xp
from cnnumpy.layers.base import Layer


class Flatten(Layer):
    """Flatten each sample into a vector (row-major, so NHWC images flatten channels last).

    Shape:
        (N, d1, d2, ...) -> (N, d1 * d2 * ...).
    """

    def __init__(self, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self._in_shape: tuple[int, ...] | None = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)

    def call(self, x: Any, training: bool) -> Any:
        self._in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def call_backward(self, dy: Any) -> Any:
        if self._in_shape is None:
            raise ValueError(f"{self.label}: backward called before forward")
        return dy.reshape(self._in_shape)


CONCURRENT_FORWARD_MIN = 2**22
"""Dense layers whose batch size times kernel size reaches this compute their forward product
as two halves of the batch on two threads."""

CONCURRENT_BACKWARD_MIN = 2**22
"""Dense layers whose batch size times kernel size reaches this compute their two backward
products on two threads (CIFAR-like model, batch 256: 1-2 % a step; smaller layers gain
nothing)."""


class Dense(Layer):
    """Fully connected layer on the last axis: ``y = activation(x @ kernel + bias)``.

    Args:
        units: number of outputs (a positive int).
        activation: name of the activation applied to the output, or None.
        use_bias: whether to add a bias (initialized to zeros).
        kernel_initializer: name of an initializer in :mod:`cnnumpy.initializers`.

    Shape:
        (N, ..., in_features) -> (N, ..., units); kernel (in_features, units), bias (units,).
    """

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int, received units={units!r}")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"Dense: use_bias must be a bool, received use_bias={use_bias!r}")
        initializers.get(kernel_initializer, "Dense: kernel_initializer")
        super().__init__(activation=activation, input_shape=input_shape, name=name, dtype=dtype)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self._x: Any = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape[:-1], self.units)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"kernel": (input_shape[-1], self.units)}
        return {**shapes, "bias": (self.units,)} if self.use_bias else shapes

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        if name == "bias":
            return xp.zeros(shape, dtype=self.dtype)
        return initializers.get(self.kernel_initializer)(shape, dtype=self.dtype)

    def call(self, x: Any, training: bool) -> Any:
        self._x = x
        kernel = self.params["kernel"]
        if x.ndim == 2 and len(x) > 1 and x.shape[0] * kernel.size >= CONCURRENT_FORWARD_MIN:
            # halves of the batch side by side on the library's threads (each row's product
            # is the one a single thread computes)
            y = xp.empty((len(x), self.units), dtype=xp.result_type(x, kernel))
            half = len(x) // 2

            def rows(part: slice) -> None:
                xp.matmul(x[part], kernel, out=y[part])

            backend.parallel_map(rows, [slice(0, half), slice(half, len(x))])
        else:
            y = x @ kernel
        if self.use_bias:
            y += self.params["bias"]  # y is this call's own array
        return y

    def call_backward(self, dy: Any) -> Any:
        if self._x is None:
            raise ValueError(f"{self.label}: backward called before forward")
        x2 = self._x.reshape(-1, self._x.shape[-1])
        dy2 = dy.reshape(-1, self.units)
        kernel = self.params["kernel"]
        products: list[Callable[[], Any]] = [lambda: x2.T @ dy2]
        if self.needs_input_grad:
            products.append(lambda: dy @ kernel.T)
        # The two products are independent: side by side on the library's threads when big
        # enough (each product is computed as on one thread, so the results are the same).
        if x2.shape[0] * kernel.size >= CONCURRENT_BACKWARD_MIN:
            results = backend.parallel_map(lambda product: product(), products)
        else:
            results = [product() for product in products]
        self.grads["kernel"] = results[0]
        if self.use_bias:
            self.grads["bias"] = backend.column_sums(dy2)
        return results[1] if self.needs_input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer}


class Activation(Layer):
    """Apply an activation function by name, e.g. ``Activation("relu")``.

    Shape:
        any shape -> the same shape.
    """

    def __init__(self, activation: str | None, *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(activation=activation, input_shape=input_shape, name=name, dtype=dtype)
        self._activation_name = activation

    def call(self, x: Any, training: bool) -> Any:
        return x  # the base class applies the activation

    def call_backward(self, dy: Any) -> Any:
        return dy

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self._activation_name}


class Dropout(Layer):
    """Inverted dropout: while training, zero each element with probability ``rate`` and scale
    the kept ones by ``1 / (1 - rate)``; at inference, the identity.

    The mask is drawn from :func:`cnnumpy.backend.rng`, so :func:`cnnumpy.set_seed` fixes it.

    Args:
        rate: probability of dropping an element, in ``[0, 1)``.

    Shape:
        any shape -> the same shape.
    """

    def __init__(self, rate: float, *, input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        ok = isinstance(rate, (int, float, np.floating, np.integer)) and not isinstance(rate, bool)
        if not ok or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be a number in [0, 1), received rate={rate!r}")
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.rate = float(rate)
        self._mask: Any = None

    def call(self, x: Any, training: bool) -> Any:
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = rng().random(x.shape, dtype=x.dtype) >= self.rate
        self._mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.rate))
        return x * self._mask

    def call_backward(self, dy: Any) -> Any:
        return dy if self._mask is None else dy * self._mask

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}
