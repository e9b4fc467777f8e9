"""Batch normalization over the last (channel) axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.backend import column_sums, xp
from cnnumpy.functional.fast import batch_norm as fast_bn
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

    With the compiled kernels, training runs :mod:`cnnumpy.functional.fast.batch_norm` (three
    passes forward, two backward, the same numbers within float rounding), and
    :meth:`forward_relu` applies a following ReLU in the same pass (``Sequential`` and graph
    chains use it for a BN followed by a ReLU layer).

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
        self._relu: tuple[bool, float] = (False, fast_bn.NO_TOP)  # see forward_relu
        self._relu_input: Any = None
        self._residual: Any = None  # see forward_add_relu

    state_names = ("moving_mean", "moving_variance")

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return dict.fromkeys(("gamma", "beta", *self.state_names), (input_shape[-1],))

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        fill = xp.ones if name in ("gamma", "moving_variance") else xp.zeros
        return fill(shape, dtype=self.dtype)

    def forward_logits(self, x: Any, training: bool = False) -> Any:
        self._relu = (False, fast_bn.NO_TOP)
        return super().forward_logits(x, training)

    def forward_relu(self, x: Any, training: bool, top: float | None = None) -> Any:
        """``min(max(BN(x), 0), top)`` (no upper clip when ``top`` is None), in one pass with
        the normalization where the compiled kernels run; :meth:`backward` then goes back
        through both."""
        self._relu = (True, fast_bn.NO_TOP if top is None else float(top))
        return Layer.forward_logits(self, x, training)

    def forward_add_relu(self, x: Any, residual: Any) -> Any | None:
        """Training: ``max(BN(x) + residual, 0)`` in the normalization's second pass, where
        the compiled kernels run on ``x`` and ``residual`` is C-contiguous, of the output's
        shape and dtype; None, computing nothing, elsewhere. :meth:`backward` then goes back
        through the batch norm alone: the gradient through the ReLU and the sum is the
        caller's (a graph's ``Add``: :meth:`cnnumpy.layers.Add.adopt_relu_output`)."""
        x = self._check_input(x)
        if not (len(x) and fast_bn.usable(x.reshape(-1, x.shape[-1]))
                and isinstance(residual, np.ndarray) and residual.shape == x.shape
                and residual.dtype == x.dtype and residual.flags.c_contiguous):
            return None
        self._relu, self._residual = (False, fast_bn.NO_TOP), residual
        try:
            return Layer.forward_logits(self, x, True)
        finally:
            self._residual = None

    def backward_add_relu(self, grads: list[Any], y: Any) -> tuple[Any, Any] | None:
        """After :meth:`forward_add_relu` made ``y``: from ``grads``, the gradients of ``y``
        from each of its consumers (one or two), the gradients of its input and of the
        residual, ``(dx, g)``, ``g = sum(grads) * (y > 0)`` made in the normalization's
        first backward pass; None, computing nothing, where the compiled kernels do not run
        (then :meth:`backward` with ``g``)."""
        cache = self._cache
        if (cache is None or cache[0] is not fast_bn or len(grads) > 2 or not all(
                isinstance(g, np.ndarray) and g.shape == y.shape and g.dtype == y.dtype
                for g in grads)):
            return None
        _, x2, mean, var, scale, shift, relu, top = cache
        dx, self.grads["gamma"], self.grads["beta"], g = fast_bn.train_backward(
            grads[0].reshape(x2.shape), x2, mean, var, self.epsilon, scale, shift, relu, top,
            None if len(grads) == 1 else grads[1].reshape(x2.shape), y.reshape(x2.shape))
        return dx.reshape(y.shape), g.reshape(y.shape)

    def call(self, x: Any, training: bool) -> Any:
        y = self._call(x, training)
        relu, top = self._relu
        fast = self._cache is not None and self._cache[0] is fast_bn
        if relu and not fast:  # the NumPy path: ReLU as its own pass
            self._relu_input = y
            y = xp.minimum(xp.maximum(y, 0), y.dtype.type(top))
        return y

    def _call(self, x: Any, training: bool) -> Any:
        # per-channel statistics over (positions, channels) with backend.column_sums
        channels = x.shape[-1]
        x2 = x.reshape(-1, channels)
        n = x2.shape[0]
        gamma, beta = self.params["gamma"], self.params["beta"]
        eps = x.dtype.type(self.epsilon)
        if training and fast_bn.usable(x2):
            relu, top = self._relu
            residual = None if self._residual is None else self._residual.reshape(x2.shape)
            y, mean, var, scale, shift = fast_bn.train_forward(  # a ReLU after any residual
                x2, gamma, beta, self.epsilon, relu or residual is not None, top, residual)
            self._update_moving(mean, var, n)
            self._cache = (fast_bn, x2, mean, var, scale, shift, relu, top)
            return y.reshape(x.shape)
        if not training:  # an affine map with the moving statistics
            inv_std = 1 / xp.sqrt(self.state["moving_variance"] + eps)
            scale = gamma * inv_std
            y = x2 * scale
            y += beta - self.state["moving_mean"] * scale
            self._cache = (x2, inv_std, False)  # x_hat is computed only if backward is called
            return y.reshape(x.shape)
        mean = column_sums(x2) / n
        x_hat = x2 - mean
        var = column_sums(xp.square(x_hat)) / n
        self._update_moving(mean, var, n)
        inv_std = 1 / xp.sqrt(var + eps)
        x_hat *= inv_std
        self._cache = (x_hat, inv_std, True)
        y = x_hat * gamma
        y += beta
        return y.reshape(x.shape)

    def _update_moving(self, mean: Any, var: Any, n: int) -> None:
        m = self.momentum
        unbiased = var * (n / (n - 1)) if n > 1 else var
        for key, batch_stat in (("moving_mean", mean), ("moving_variance", unbiased)):
            moving = self.state[key]
            self.state[key] = (m * moving + (1 - m) * batch_stat).astype(self.dtype, copy=False)

    def call_backward(self, dy: Any) -> Any:
        if self._cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        if self._cache[0] is fast_bn:
            _, x2, mean, var, scale, shift, relu, top = self._cache
            dx, self.grads["gamma"], self.grads["beta"], _ = fast_bn.train_backward(
                dy.reshape(x2.shape), x2, mean, var, self.epsilon, scale, shift, relu, top)
            return dx.reshape(dy.shape)
        if self._relu[0]:
            z, top = self._relu_input, self._relu[1]
            dy = dy * ((z > 0) & (z < top))
        saved, inv_std, training = self._cache
        dy2 = dy.reshape(-1, dy.shape[-1])
        n = dy2.shape[0]
        scale = self.params["gamma"] * inv_std
        if training:
            x_hat = saved
        else:  # after inference the input was kept: x_hat = (x - moving_mean) * inv_std
            x_hat = (saved - self.state["moving_mean"]) * inv_std
        dbeta = column_sums(dy2)
        t = dy2 * x_hat
        dgamma = column_sums(t)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        if not training:
            return (dy2 * scale).reshape(dy.shape)
        # Through the batch mean and variance: dx = g/σ · (dy − mean(dy) − x̂·mean(dy·x̂)).
        xp.multiply(x_hat, dgamma / n, out=t)
        dx = dy2 - t
        dx -= dbeta / n
        dx *= scale
        return dx.reshape(dy.shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
