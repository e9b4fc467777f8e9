"""Metrics: functions of ``(y_true, y_pred)`` returning one number for a batch.

``"accuracy"`` resolves, as in Keras, to the accuracy that fits the loss and the shapes:
sparse labels against class scores, one-hot targets against class scores, or binary targets
against one probability per output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnumpy.backend import xp


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of rows whose highest score is at the integer label."""
    labels = xp.asarray(y_true).reshape(-1)
    return float(xp.mean(xp.argmax(y_pred, axis=-1).reshape(-1) == labels))


def categorical_accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of rows whose highest score is where the one-hot target is highest."""
    return float(xp.mean(xp.argmax(y_pred, axis=-1) == xp.argmax(y_true, axis=-1)))


def _as_output_shape(y_true: Any, y_pred: Any) -> Any:
    """``y_true`` shaped like ``y_pred``: labels ``(N, ...)`` for outputs ``(N, ..., 1)`` get
    the last axis back, as the losses accept them (never broadcast into an N x N table)."""
    y_true = xp.asarray(y_true)
    if y_true.shape != y_pred.shape and y_pred.shape[-1:] == (1,) \
            and y_true.shape == y_pred.shape[:-1]:
        return y_true[..., None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"binary_accuracy: y_true must have the shape of y_pred {y_pred.shape}"
                         f"{f' or {y_pred.shape[:-1]}' if y_pred.shape[-1:] == (1,) else ''}, "
                         f"received {y_true.shape}")
    return y_true


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> float:
    """Fraction of outputs on the same side of ``threshold`` as the 0/1 target.

    Shape:
        y_pred ``(N, ...)``; y_true the same, or ``(N, ...)`` without the last axis when that
        axis is 1 (labels ``(N,)`` for outputs ``(N, 1)``, as the losses accept).
    """
    y_pred = xp.asarray(y_pred)
    y_true = _as_output_shape(y_true, y_pred)
    return float(xp.mean((y_pred > threshold) == (y_true > 0.5)))


METRICS: dict[str, Callable] = {
    f.__name__: f for f in (sparse_categorical_accuracy, categorical_accuracy, binary_accuracy)
}


def resolve(name: str, loss_name: str | None, y_pred_shape: tuple) -> Callable:
    """Return the metric function for ``name``, resolving "accuracy"/"acc" from the loss."""
    if name in ("accuracy", "acc"):
        if loss_name == "sparse_categorical_crossentropy":
            return sparse_categorical_accuracy
        if loss_name == "binary_crossentropy" or (len(y_pred_shape) > 0 and y_pred_shape[-1] == 1):
            return binary_accuracy
        return categorical_accuracy
    if name not in METRICS:
        raise ValueError(
            f"unknown metric {name!r}; expected 'accuracy' or one of {sorted(METRICS)}"
        )
    return METRICS[name]
