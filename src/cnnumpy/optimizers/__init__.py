"""Optimizers: state kept outside the model, arithmetic in pure update functions.

``optimizer.apply(params, grads)`` updates each array of ``params`` in place. Learning-rate
schedules live in :mod:`cnnumpy.optimizers.schedules`.
"""

from __future__ import annotations

from typing import Any

from cnnumpy.optimizers import schedules
from cnnumpy.optimizers.adam import Adam, AdamW, adam_update
from cnnumpy.optimizers.base import Optimizer
from cnnumpy.optimizers.clipping import clip_by_global_norm, clip_by_norm
from cnnumpy.optimizers.rmsprop import RMSprop, rmsprop_update
from cnnumpy.optimizers.sgd import SGD, sgd_update

OPTIMIZERS: dict[str, type[SGD | Adam | AdamW | RMSprop]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}
"""The names :func:`get`, :func:`serialize` and :func:`deserialize` use."""


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer with default arguments from a name in :data:`OPTIMIZERS` (or an
    Optimizer, returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier in OPTIMIZERS:
        return OPTIMIZERS[identifier]()
    raise ValueError(f"unknown optimizer {identifier!r}; expected an Optimizer instance or "
                     f"one of {sorted(OPTIMIZERS)}")


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"name": e.g. "adam", "config": optimizer.get_config()}``, for model files."""
    names = [name for name, cls in OPTIMIZERS.items() if cls is type(optimizer)]
    if not names:
        raise TypeError(f"serialize: can only serialize the optimizers {sorted(OPTIMIZERS)}, "
                        f"received {optimizer!r}")
    return {"name": names[0], "config": optimizer.get_config()}


def deserialize(data: dict[str, Any]) -> Optimizer:
    """Rebuild an optimizer (without its state) from :func:`serialize`'s dict."""
    if not isinstance(data, dict) or data.get("name") not in OPTIMIZERS \
            or not isinstance(data.get("config"), dict):
        raise ValueError(f"deserialize: expected {{'name': one of {sorted(OPTIMIZERS)}, "
                         f"'config': {{...}}}}, received {data!r}")
    return OPTIMIZERS[data["name"]].from_config(data["config"])


__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "adam_update", "clip_by_global_norm",
           "clip_by_norm", "deserialize", "get", "rmsprop_update", "schedules", "serialize",
           "sgd_update"]
