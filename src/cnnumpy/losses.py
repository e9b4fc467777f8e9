"""Loss functions: a batch-mean value and its gradient with respect to the predictions.

Every loss offers ``forward`` (the value, a Python float), ``backward`` (d value / d y_pred,
same shape as ``y_pred``) and ``value_and_grad`` (both, sharing the work). The value is a mean
over the batch, so the gradient already carries the ``1 / batch`` factor. Each also takes
``sample_weight`` (one weight per sample): the value is then ``mean(weight * per-sample loss)``,
as in Keras.

Fused activations: when a model's last layer ends in ``loss.fused_activation`` (softmax for the
categorical losses, sigmoid for binary cross-entropy), the model may skip that activation and
use ``loss.with_logits()`` on the pre-activation outputs. The gradient is then simply
``softmax(z) - y`` or ``sigmoid(z) - y`` (over the batch size), and never overflows.

From probabilities, predictions are clipped to ``[1e-7, 1 - 1e-7]`` as in Keras. The gradient
uses the clipped value, so a saturated wrong prediction still gets a (large, finite) push back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional.activations import exp_no_underflow, log_softmax, sigmoid, softmax

EPSILON = 1e-7
"""Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before taking logs."""


class Loss:
    """Base class of all losses.

    Subclasses implement ``_compute(y_true, y_pred, need_grad) -> (losses, grad or None)``
    on validated arrays: the per-sample losses ``(batch,)`` and the gradient of their *sum*;
    ``_targets`` validates ``y_true`` against ``y_pred``. The base class reduces both.
    """

    fused_activation: str | None = None
    """The last-layer activation this loss can absorb (see :meth:`with_logits`)."""

    from_logits: bool = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        return self.forward(y_true, y_pred, sample_weight)

    def forward(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        """The loss, averaged over the batch (each sample times its weight, if given)."""
        return self._run(y_true, y_pred, sample_weight, need_grad=False)[0]

    def backward(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """d loss / d y_pred for the batch-mean loss; same shape and dtype as ``y_pred``."""
        return self._run(y_true, y_pred, sample_weight, need_grad=True)[1]

    def value_and_grad(self, y_true: Any, y_pred: Any,
                       sample_weight: Any = None) -> tuple[float, Any]:
        """``(forward(...), backward(...))``, computing the shared parts once."""
        return self._run(y_true, y_pred, sample_weight, need_grad=True)

    def with_logits(self) -> Loss:
        """An equivalent loss that takes the pre-activation outputs (``from_logits=True``)."""
        raise ValueError(f"{type(self).__name__} has no fused activation: with_logits() "
                         "applies only to the cross-entropy losses")

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)

    # ----- internals ---------------------------------------------------------------------
    def _run(self, y_true: Any, y_pred: Any, sample_weight: Any,
             need_grad: bool) -> tuple[float, Any]:
        y_pred = self._predictions(y_pred)
        y_true = self._targets(y_true, y_pred)
        n = y_pred.shape[0]
        # Results below the smallest normal number are harmless: let them round to zero.
        with np.errstate(under="ignore"):
            losses, grad = self._compute(y_true, y_pred, need_grad)
            if sample_weight is None:
                return float(xp.sum(losses) / n), (grad / n if need_grad else None)
            w = self._weights(sample_weight, n, y_pred.dtype)
            value = float(xp.sum(w * losses) / n)
            if need_grad:
                grad = grad * (w / n).reshape(n, *([1] * (grad.ndim - 1)))
            return value, grad

    def _weights(self, sample_weight: Any, n: int, dtype: Any) -> Any:
        w = xp.asarray(sample_weight)
        if w.dtype.kind not in "fiub" or w.shape not in ((n,), (n, 1)):
            raise ValueError(f"{type(self).__name__}: sample_weight must be {n} real numbers, "
                             f"one per sample, received shape {w.shape} of {w.dtype.name}")
        if not xp.all(xp.isfinite(w)) or xp.any(w < 0):
            raise ValueError(f"{type(self).__name__}: sample_weight must be finite and >= 0")
        return w.reshape(n).astype(dtype)

    def _predictions(self, y_pred: Any) -> Any:
        y_pred = xp.asarray(y_pred)
        if y_pred.dtype.kind in "iub":
            y_pred = y_pred.astype(backend.floatx())
        elif y_pred.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}: y_pred must be a real-valued array, "
                            f"received dtype {y_pred.dtype.name!r}")
        if y_pred.ndim == 0 or y_pred.size == 0:
            raise ValueError(f"{type(self).__name__}: y_pred must be a non-empty batch, "
                             f"received shape {y_pred.shape}")
        return y_pred

    def _targets(self, y_true: Any, y_pred: Any) -> Any:
        """Same-shape float targets; ``(batch,)`` is accepted for ``(batch, 1)`` predictions."""
        y_true = self._real(y_true)
        if y_true.shape != y_pred.shape:
            if y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
                y_true = y_true[..., None]
            else:
                raise ValueError(f"{type(self).__name__}: y_true and y_pred must have the same "
                                 f"shape, received y_true {y_true.shape} and y_pred "
                                 f"{y_pred.shape}")
        return y_true.astype(y_pred.dtype, copy=False)

    def _real(self, y_true: Any) -> Any:
        y_true = xp.asarray(y_true)
        if y_true.dtype.kind not in "fiub":
            raise TypeError(f"{type(self).__name__}: y_true must be a real-valued array, "
                            f"received dtype {y_true.dtype.name!r}")
        return y_true

    def _compute(self, y_true: Any, y_pred: Any, need_grad: bool) -> tuple[Any, Any]:
        raise NotImplementedError


def _check_class_axis(name: str, y_pred: Any) -> None:
    if y_pred.ndim < 2:
        raise ValueError(f"{name}: y_pred must have shape (batch, ..., classes), "
                         f"received {y_pred.shape}")


class _Crossentropy(Loss):
    """Shared by the cross-entropy losses: the ``from_logits`` switch."""

    def __init__(self, from_logits: bool = False) -> None:
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: from_logits must be True or False, "
                            f"received from_logits={from_logits!r}")
        self.from_logits = bool(from_logits)

    def with_logits(self) -> Loss:
        return type(self)(from_logits=True)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}


class MeanSquaredError(Loss):
    """Mean of ``(y_pred - y_true) ** 2`` over all elements.

    Shape:
        y_true and y_pred: ``(batch, ...)``, the same shape.
    """

    def _compute(self, y_true, y_pred, need_grad):
        diff = y_pred - y_true
        per_sample = diff[0].size
        losses = xp.mean((diff * diff).reshape(len(diff), -1), axis=1)
        return losses, (2 * diff / per_sample if need_grad else None)


class BinaryCrossentropy(_Crossentropy):
    """Binary cross-entropy, averaged over all elements; targets in ``[0, 1]``.

    Args:
        from_logits: if True, ``y_pred`` holds logits (before a sigmoid), else probabilities.

    Shape:
        y_true and y_pred: ``(batch, ...)``, the same shape.
    """

    fused_activation = "sigmoid"

    def _targets(self, y_true, y_pred):
        y_true = super()._targets(y_true, y_pred)
        outside = ~((y_true >= 0) & (y_true <= 1))  # NaN counts as outside
        if xp.any(outside):
            raise ValueError(f"{type(self).__name__}: targets must be in [0, 1], received "
                             f"{float(y_true[outside][0])} in y_true")
        return y_true

    def _compute(self, y_true, y_pred, need_grad):
        n = y_pred[0].size  # elements per sample: the loss averages over them
        batch = len(y_pred)
        if self.from_logits:
            # log(1 + exp(x)) - x*y, written so that no exp overflows.
            x = y_pred
            terms = xp.maximum(x, 0) - x * y_true + xp.log1p(exp_no_underflow(-xp.abs(x)))
            grad = (sigmoid(x) - y_true) / n if need_grad else None
            return xp.sum(terms.reshape(batch, -1), axis=1) / n, grad
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        terms = y_true * xp.log(p) + (1 - y_true) * xp.log1p(-p)
        grad = (p - y_true) / (p * (1 - p)) / n if need_grad else None
        return -xp.sum(terms.reshape(batch, -1), axis=1) / n, grad


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with one-hot or soft targets: sum over classes, mean over the batch.

    Args:
        from_logits: if True, ``y_pred`` holds logits (before a softmax), else probabilities,
            used as given (Keras first rescales each row to sum 1; a softmax output does).

    Shape:
        y_true and y_pred: ``(batch, ..., classes)``, the same shape.
    """

    fused_activation = "softmax"

    def _targets(self, y_true, y_pred):
        name = type(self).__name__
        _check_class_axis(name, y_pred)
        y_true = self._real(y_true)
        if y_true.shape == y_pred.shape:
            return y_true.astype(y_pred.dtype, copy=False)
        if y_true.ndim == y_pred.ndim and y_true.shape[:-1] == y_pred.shape[:-1]:
            raise ValueError(f"{name}: one-hot targets have {y_true.shape[-1]} classes on their "
                             f"last axis but y_pred has {y_pred.shape[-1]} (y_true "
                             f"{y_true.shape}, y_pred {y_pred.shape})")
        hint = ""
        if y_true.shape in (y_pred.shape[:-1], (*y_pred.shape[:-1], 1)):
            hint = "; for integer class labels use SparseCategoricalCrossentropy"
        raise ValueError(f"{name}: y_true must be one-hot or soft targets of the same shape as "
                         f"y_pred, received y_true {y_true.shape} and y_pred {y_pred.shape}"
                         f"{hint}")

    def _compute(self, y_true, y_pred, need_grad):
        batch = len(y_pred)
        count = y_pred[0].size // y_pred.shape[-1]  # positions per sample (1 for (N, C))
        if self.from_logits:
            losses = -xp.sum((y_true * log_softmax(y_pred)).reshape(batch, -1), axis=1) / count
            if not need_grad:
                return losses, None
            total = xp.sum(y_true, axis=-1, keepdims=True)  # 1 for one-hot or soft targets
            return losses, (softmax(y_pred) * total - y_true) / count
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        losses = -xp.sum((y_true * xp.log(p)).reshape(batch, -1), axis=1) / count
        return losses, (-y_true / p / count if need_grad else None)


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with integer class labels; mean over the batch.

    Args:
        from_logits: if True, ``y_pred`` holds logits (before a softmax), else probabilities.

    Shape:
        y_true: ``(batch, ...)`` or ``(batch, ..., 1)`` integer labels in ``[0, classes)``
        (floats with integral values are accepted). y_pred: ``(batch, ..., classes)``.
    """

    fused_activation = "softmax"

    def _targets(self, y_true, y_pred):
        name = type(self).__name__
        _check_class_axis(name, y_pred)
        labels = xp.asarray(y_true)
        if labels.dtype.kind == "f":
            safe = xp.where(xp.isfinite(labels), labels, 0.5)  # nan and inf count as bad
            bad = safe != xp.floor(safe)
            if xp.any(bad):
                raise TypeError(f"{name}: labels must be integer class indices, received "
                                f"{float(labels[bad][0])} in y_true of dtype {labels.dtype.name}")
        elif labels.dtype.kind not in "iu":
            raise TypeError(f"{name}: labels must be integer class indices, received y_true "
                            f"of dtype {labels.dtype.name!r}")
        if labels.shape == (*y_pred.shape[:-1], 1):
            labels = labels[..., 0]
        if labels.shape != y_pred.shape[:-1]:
            raise ValueError(f"{name}: y_true must have shape {y_pred.shape[:-1]} or "
                             f"{(*y_pred.shape[:-1], 1)} for y_pred {y_pred.shape}, "
                             f"received {labels.shape}")
        classes = y_pred.shape[-1]
        out_of_range = (labels < 0) | (labels >= classes)
        if xp.any(out_of_range):
            value = labels[out_of_range][0]
            value = int(value) if labels.dtype.kind in "iu" else float(value)
            raise ValueError(f"{name}: labels must be in [0, {classes}) for y_pred with "
                             f"{classes} classes, received label {value}")
        return labels.astype(xp.int64)

    def _compute(self, labels, y_pred, need_grad):
        batch = len(y_pred)
        count = labels[0].size  # positions per sample (1 for (N, C) predictions)
        onehot = (xp.arange(y_pred.shape[-1]) == labels[..., None]).astype(y_pred.dtype)
        if self.from_logits:
            picked = xp.take_along_axis(log_softmax(y_pred), labels[..., None], axis=-1)
            losses = -xp.sum(picked.reshape(batch, -1), axis=1) / count
            return losses, ((softmax(y_pred) - onehot) / count if need_grad else None)
        picked = xp.take_along_axis(y_pred, labels[..., None], axis=-1)
        p = xp.clip(picked, EPSILON, 1 - EPSILON)
        losses = -xp.sum(xp.log(p).reshape(batch, -1), axis=1) / count
        return losses, (-onehot / p / count if need_grad else None)


LOSSES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
"""The names :func:`get` and :func:`deserialize` accept."""


def get(identifier: str | Loss) -> Loss:
    """A loss instance from a name in :data:`LOSSES` (or a Loss, returned as is)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in LOSSES:
        return LOSSES[identifier]()
    raise ValueError(f"unknown loss {identifier!r}; expected a Loss instance or one of "
                     f"{sorted(LOSSES)}")


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"name": ..., "config": loss.get_config()}`` with the snake-case name, e.g.
    ``"sparse_categorical_crossentropy"``; for model files."""
    names = [name for name, cls in LOSSES.items() if cls is type(loss) and name != "mse"]
    if not names:
        raise TypeError(f"serialize: can only serialize the built-in losses "
                        f"{sorted(set(LOSSES) - {'mse'})}, received {loss!r}")
    return {"name": names[0], "config": loss.get_config()}


def deserialize(data: dict[str, Any]) -> Loss:
    """Rebuild a loss from :func:`serialize`'s dict."""
    if not isinstance(data, dict) or data.get("name") not in LOSSES:
        raise ValueError(f"deserialize: expected {{'name': one of {sorted(LOSSES)}, "
                         f"'config': {{...}}}}, received {data!r}")
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"deserialize: config must be a dict, received {config!r}")
    return LOSSES[data["name"]].from_config(config)
