"""The cross-entropy losses: binary, categorical (one-hot or soft targets) and sparse
(integer labels); see :mod:`cnnumpy.losses`."""

from __future__ import annotations

from typing import Any

from cnnumpy.backend import xp
from cnnumpy.functional.activations import exp_no_underflow, log_softmax, sigmoid, softmax
from cnnumpy.losses.base import EPSILON, _check_class_axis, _Crossentropy


class BinaryCrossentropy(_Crossentropy):
    """Binary cross-entropy, averaged over all elements; targets in ``[0, 1]``.

    Args:
        from_logits: if True, ``y_pred`` holds logits (before a sigmoid), else probabilities.
        label_smoothing: in ``[0, 1]``: targets ``y * (1 - s) + s / 2``.

    Shape:
        y_true and y_pred: ``(batch, ...)``, the same shape.
    """

    fused_activation = "sigmoid"

    def _targets(self, y_true: Any, y_pred: Any) -> Any:
        y_true = super()._targets(y_true, y_pred)
        outside = ~((y_true >= 0) & (y_true <= 1))  # NaN counts as outside
        if xp.any(outside):
            raise ValueError(f"{type(self).__name__}: targets must be in [0, 1], received "
                             f"{float(y_true[outside][0])} in y_true")
        return self._smoothed(y_true, 2)

    def _compute(self, y_true: Any, y_pred: Any, need_grad: bool) -> tuple[Any, Any]:
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
        label_smoothing: in ``[0, 1]``: targets ``y * (1 - s) + s / classes``.

    Shape:
        y_true and y_pred: ``(batch, ..., classes)``, the same shape.
    """

    fused_activation = "softmax"

    def _targets(self, y_true: Any, y_pred: Any) -> Any:
        name = type(self).__name__
        _check_class_axis(name, y_pred)
        y_true = self._real(y_true)
        if y_true.shape == y_pred.shape:
            return self._smoothed(y_true.astype(y_pred.dtype, copy=False), y_pred.shape[-1])
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

    def _compute(self, y_true: Any, y_pred: Any, need_grad: bool) -> tuple[Any, Any]:
        return _soft_targets_loss(y_true, y_pred, self.from_logits, need_grad)


def _soft_targets_loss(y_true: Any, y_pred: Any, from_logits: bool,
                       need_grad: bool) -> tuple[Any, Any]:
    """Per-sample ``-sum(y_true * log p)`` (mean over positions) and its gradient, ``p`` the
    softmax of logits or the clipped probabilities ``y_pred``."""
    batch = len(y_pred)
    count = y_pred[0].size // y_pred.shape[-1]  # positions per sample (1 for (N, C))
    if from_logits:
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
        label_smoothing: in ``[0, 1]``: the targets are ``onehot * (1 - s) + s / classes``
            (``torch.nn.CrossEntropyLoss(label_smoothing=s)``).

    Shape:
        y_true: ``(batch, ...)`` or ``(batch, ..., 1)`` integer labels in ``[0, classes)``
        (floats with integral values are accepted). y_pred: ``(batch, ..., classes)``.

    Example:
        >>> SparseCategoricalCrossentropy()(np.array([0]), np.array([[0.5, 0.5]]))  # log 2
        0.693...
    """

    fused_activation = "softmax"

    def _targets(self, y_true: Any, y_pred: Any) -> Any:
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

    def _compute(self, labels: Any, y_pred: Any, need_grad: bool) -> tuple[Any, Any]:
        batch = len(y_pred)
        count = labels[0].size  # positions per sample (1 for (N, C) predictions)
        onehot = (xp.arange(y_pred.shape[-1]) == labels[..., None]).astype(y_pred.dtype)
        if self.label_smoothing:  # soft targets, as the categorical loss takes them
            return _soft_targets_loss(self._smoothed(onehot, y_pred.shape[-1]), y_pred,
                                      self.from_logits, need_grad)
        if self.from_logits:
            picked = xp.take_along_axis(log_softmax(y_pred), labels[..., None], axis=-1)
            losses = -xp.sum(picked.reshape(batch, -1), axis=1) / count
            return losses, ((softmax(y_pred) - onehot) / count if need_grad else None)
        picked = xp.take_along_axis(y_pred, labels[..., None], axis=-1)
        p = xp.clip(picked, EPSILON, 1 - EPSILON)
        losses = -xp.sum(xp.log(p).reshape(batch, -1), axis=1) / count
        return losses, (-onehot / p / count if need_grad else None)
