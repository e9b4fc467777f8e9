"""Input checks for a model's ``fit``, ``evaluate``, ``predict`` and ``train_on_batch``:
every mistake is a ValueError or TypeError naming the method (``Sequential.fit``,
``Model.predict``...) and argument, raised before the first batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy.backend import xp


def check_int(value: Any, name: str, where: str, minimum: int) -> int:
    """``value`` as an int, or a ValueError naming ``where`` (e.g. ``Sequential.fit``) and
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, "
                         f"received {name}={value!r}")
    return int(value)


def _as_array(value: Any, name: str, where: str) -> Any:
    if isinstance(value, xp.ndarray):
        return value
    try:
        return xp.asarray(value)
    except ValueError as exc:  # e.g. a list of images of different sizes
        raise ValueError(f"{where}: {name} must be an array (or a list of "
                         f"equal-shaped arrays), received a ragged {type(value).__name__} "
                         f"({exc})") from None


def check_arrays(model: Any, x: Any, y: Any, where: str) -> tuple[Any, Any]:
    """Validate ``x`` (and ``y``, which may be None only for ``predict``), build the model if
    needed, and cast ``x``; labels are checked against the loss here, before any batch runs.

    Raises:
        TypeError: ``x`` or ``y`` is not a real-valued array, or labels are not integers
            for a sparse loss.
        ValueError: wrong shape, ``x`` and ``y`` of different lengths, labels outside the
            model's classes, or no samples.
    """
    method, where = where, f"{type(model).__name__}.{where}"
    x = _as_array(x, "x", where)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{where}: x must be a real-valued array, "
                        f"received dtype {x.dtype.name!r}")
    if x.ndim < 2:
        raise ValueError(
            f"{where}: x must be a batch (N, ...), received shape {x.shape}")
    model._ensure_built(x)
    expected = model.input_shape
    if x.shape[1:] != expected:
        raise ValueError(f"{where}: x must have shape (N, "
                         f"{', '.join(map(str, expected))}), received {x.shape}")
    x = x.astype(model.layers[0].dtype, copy=False)
    if y is None:
        if method == "predict":
            return x, None
        raise TypeError(f"{where}: y (the labels or targets for x) is required, "
                        "received None")
    y = _as_array(y, "y", where)
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{where}: y must be a real-valued array, "
                        f"received dtype {y.dtype.name!r}")
    if y.ndim == 0 or len(y) != len(x):
        raise ValueError(f"{where}: x and y must have the same number of samples, "
                         f"received {len(x)} images and {y.shape[0] if y.ndim else 0} labels")
    if len(x) == 0:
        raise ValueError(f"{where}: received an empty dataset (0 samples)")
    _check_targets(model, y, where)
    if y.dtype.kind == "f":
        y = y.astype(model._output_layer.dtype, copy=False)
    return x, y


def _check_targets(model: Any, y: Any, where: str) -> None:
    """The loss's own check of ``y`` against the model's output, on the whole dataset at once:
    a bad label fails now, not at whichever batch holds it."""
    if model.loss is None:
        return
    zero = xp.zeros((), model._output_layer.dtype)
    outputs = xp.broadcast_to(zero, (len(y), *model.output_shape))  # no memory: a view
    try:
        model.loss._targets(y, outputs)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}: y does not fit the loss: {exc}") from None


def sample_weights(y: Any, class_weight: dict | None, sample_weight: Any,
                   where: str = "Sequential.fit") -> Any:
    """One weight per sample from ``sample_weight`` or ``class_weight`` (None if neither).

    As in Keras, a class label is the integer label (a float label is rounded: a smoothed
    0.95 is class 1), or the index of the largest entry of a one-hot or soft target.
    """
    if class_weight is not None and sample_weight is not None:
        raise ValueError(f"{where}: give class_weight or sample_weight, not both")
    if sample_weight is not None:
        w = xp.asarray(sample_weight)
        if w.dtype.kind not in "fiub" or w.shape not in ((len(y),), (len(y), 1)):
            raise ValueError(f"{where}: sample_weight must hold one number per "
                             f"sample ({len(y)}), received shape {w.shape}")
        w = w.reshape(-1).astype(np.float64)
    elif class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"{where}: class_weight must be a dict "
                            f"{{class: weight}}, received {class_weight!r}")
        if y.ndim > 2:  # as Keras: a class weight weighs a whole sample
            raise ValueError(f"{where}: class_weight takes one label per sample (y of shape "
                             f"(N,) or (N, classes)), received y of shape {y.shape}; for "
                             "per-pixel labels give sample_weight per image instead")
        labels = y.reshape(len(y), -1)
        labels = np.rint(labels[:, 0]) if labels.shape[1] == 1 else labels.argmax(axis=1)
        labels = labels.astype(np.int64)
        missing = sorted(set(np.unique(labels).tolist()) - set(class_weight))
        if missing:
            raise ValueError(f"{where}: class_weight has no weight for classes "
                             f"{missing}")
        table = np.zeros(int(max(max(class_weight), labels.max())) + 1)
        for c, weight in class_weight.items():
            table[int(c)] = weight
        w = table[labels]
    else:
        return None
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{where}: sample weights must be finite and >= 0")
    return w


def validation_count(n: int,
                     validation_split: float | np.integer[Any] | np.floating[Any]) -> int:
    """How many of ``n`` samples ``validation_split`` sets aside: as in Keras, training
    keeps the first ``floor(n * (1 - validation_split))`` and validation the rest."""
    return n - int(math.floor(n * (1.0 - validation_split)))


def split_validation(model: Any, x: Any, y: Any, validation_split: Any, validation_data: Any,
                     sample_weight: Any = None
                     ) -> tuple[Any, Any, tuple[Any, Any, Any] | None]:
    """``(x_train, y_train, (x_val, y_val, w_val) or None)``: ``validation_data`` checked
    (a pair, or a triple with sample weights), or the last ``validation_split`` share of
    ``(x, y)`` with the same share of ``sample_weight`` (one weight per sample, or None)."""
    where = f"{type(model).__name__}.fit"
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(f"{where}: validation_data must be a pair (x_val, y_val) "
                             "or a triple (x_val, y_val, sample_weight_val)")
        x_val, y_val = check_arrays(model, validation_data[0], validation_data[1],
                                    "fit (validation_data)")
        w_val = None if len(validation_data) == 2 else sample_weights(
            y_val, None, validation_data[2], f"{where} (validation_data)")
        return x, y, (x_val, y_val, w_val)
    if (isinstance(validation_split, bool)
            or not isinstance(validation_split, (int, float, np.integer, np.floating))
            or not 0.0 <= validation_split < 1.0):
        raise ValueError(f"{where}: validation_split must be in [0, 1), "
                         f"received validation_split={validation_split!r}")
    n_val = validation_count(len(x), validation_split)
    if validation_split > 0 and not 0 < n_val < len(x):
        raise ValueError(f"{where}: validation_split={validation_split} of {len(x)} "
                         "samples leaves no samples for validation or for training")
    if n_val == 0:
        return x, y, None
    w_val = None if sample_weight is None else sample_weight[-n_val:]
    return x[:-n_val], y[:-n_val], (x[-n_val:], y[-n_val:], w_val)
