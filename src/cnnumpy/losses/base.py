"""The Loss base class, the cross-entropy switch and mean squared error; see
:mod:`cnnumpy.losses`."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.backend import xp

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
        """The loss's constructor arguments, JSON-ready."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """The loss that ``get_config`` describes."""
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
    """Shared by the cross-entropy losses: the ``from_logits`` switch and label smoothing
    (targets moved towards the uniform distribution over the classes: ``y * (1 - s) + s /
    classes``, two classes for binary cross-entropy, as Keras and PyTorch do)."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        name = type(self).__name__
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"{name}: from_logits must be True or False, "
                            f"received from_logits={from_logits!r}")
        if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
                label_smoothing, (int, float, np.integer, np.floating)) \
                or not 0 <= label_smoothing <= 1:
            raise ValueError(f"{name}: label_smoothing must be a number in [0, 1], "
                             f"received label_smoothing={label_smoothing!r}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def with_logits(self) -> Loss:
        return type(self)(from_logits=True, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def _smoothed(self, y_true: Any, classes: int) -> Any:
        """``y_true * (1 - s) + s / classes`` (``y_true`` itself when ``s`` is 0)."""
        s = self.label_smoothing
        return y_true if not s else y_true * (1 - s) + s / classes


class MeanSquaredError(Loss):
    """Mean of ``(y_pred - y_true) ** 2`` over all elements.

    Shape:
        y_true and y_pred: ``(batch, ...)``, the same shape.
    """

    def _compute(self, y_true: Any, y_pred: Any, need_grad: bool) -> tuple[Any, Any]:
        diff = y_pred - y_true
        per_sample = diff[0].size
        losses = xp.mean((diff * diff).reshape(len(diff), -1), axis=1)
        return losses, (2 * diff / per_sample if need_grad else None)
