"""Batch normalization over the last (channel) axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.backend import xp
from cnnumpy.layers.base import Layer


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class BatchNormalization(Layer):
    """Normalize each channel (the last axis) with batch statistics, then scale and shift.

    Training (``training=True``) normalizes with the batch mean and the biased batch variance
    and updates the moving statistics Keras-style,
    ``moving = momentum * moving + (1 - momentum) * batch_stat``, using the unbiased variance
    ``var * n / (n - 1)`` for ``moving_variance`` as PyTorch does (PyTorch's momentum is
    ``1 - momentum``). Inference uses the moving statistics, which makes the layer an affine map.

    Args:
        momentum: weight of the old moving statistics, in ``[0, 1]``.
        epsilon: small positive number added to the variance.

    Shape:
        (N, ..., C) -> (N, ..., C), statistics over every axis but the last; gamma, beta,
        moving_mean and moving_variance have shape (C,).
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, *, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        if not _is_number(momentum) or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization: momentum must be a number in [0, 1], "
                             f"received momentum={momentum!r}")
        if not _is_number(epsilon) or not epsilon > 0:
            raise ValueError(f"BatchNormalization: epsilon must be a positive number, "
                             f"received epsilon={epsilon!r}")
        super().__init__(input_shape=input_shape, name=name, dtype=dtype)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self._cache: tuple | None = None

    def _create_weights(self, input_shape: tuple[int, ...]) -> None:
        channels = input_shape[-1]
        self.params["gamma"] = xp.ones((channels,), dtype=self.dtype)
        self.params["beta"] = xp.zeros((channels,), dtype=self.dtype)
        self.state["moving_mean"] = xp.zeros((channels,), dtype=self.dtype)
        self.state["moving_variance"] = xp.ones((channels,), dtype=self.dtype)

    def call(self, x: Any, training: bool) -> Any:
        axes = tuple(range(x.ndim - 1))
        if training:
            mean = xp.mean(x, axis=axes)
            var = xp.var(x, axis=axes)
            self._update_moving(mean, var, x.size // x.shape[-1])
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        inv_std = 1 / xp.sqrt(var + x.dtype.type(self.epsilon))
        x_hat = (x - mean) * inv_std
        self._cache = (x_hat, inv_std, training)
        return self.params["gamma"] * x_hat + self.params["beta"]

    def _update_moving(self, mean: Any, var: Any, n: int) -> None:
        m = self.momentum
        unbiased = var * (n / (n - 1)) if n > 1 else var
        for key, batch_stat in (("moving_mean", mean), ("moving_variance", unbiased)):
            moving = self.state[key]
            self.state[key] = (m * moving + (1 - m) * batch_stat).astype(self.dtype, copy=False)

    def call_backward(self, dy: Any) -> Any:
        if self._cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        x_hat, inv_std, training = self._cache
        axes = tuple(range(dy.ndim - 1))
        dbeta = xp.sum(dy, axis=axes)
        dgamma = xp.sum(dy * x_hat, axis=axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        scale = self.params["gamma"] * inv_std
        if not training:
            return dy * scale
        n = dy.size // dy.shape[-1]
        # Through the batch mean and variance: dx = g/σ · (dy − mean(dy) − x̂·mean(dy·x̂)).
        return scale * (dy - dbeta / n - x_hat * (dgamma / n))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
