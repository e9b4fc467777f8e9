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

Per-pixel predictions (segmentation) need nothing special: the cross-entropies take
``(N, H, W, C)`` scores with ``(N, H, W)`` integer labels (sparse) or ``(N, H, W, C)`` one-hot
targets, and binary cross-entropy ``(N, H, W, 1)`` with ``(N, H, W)`` masks; the value is the
mean over every pixel of every image (PyTorch's ``reduction="mean"``), a sample weight weighing
all the pixels of its image.

From probabilities, predictions are clipped to ``[1e-7, 1 - 1e-7]`` as in Keras. The gradient
uses the clipped value, so a saturated wrong prediction still gets a (large, finite) push back.
"""

from __future__ import annotations

from typing import Any

from cnnumpy.losses.base import EPSILON, Loss, MeanSquaredError
from cnnumpy.losses.crossentropy import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)

__all__ = ["EPSILON", "LOSSES", "BinaryCrossentropy", "CategoricalCrossentropy", "Loss",
           "MeanSquaredError", "SparseCategoricalCrossentropy", "deserialize", "get",
           "serialize"]

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
