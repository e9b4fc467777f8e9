"""The checks and weight accessors every layer shares.

``check_shape`` validates a shape. :class:`cnnumpy.layers.base.Layer` inherits from
``_LayerWeights`` the counting, getting, setting and checking of the arrays in the ``params``
and ``state`` dicts that ``Layer.build`` fills. Both are importable from
:mod:`cnnumpy.layers.base`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy.backend import xp


def check_shape(shape: Any, where: str) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of positive ints, or raise a ValueError naming ``where``."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{where}: expected a shape (tuple of ints), received {shape!r}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0:
            raise ValueError(f"{where}: shape dimensions must be positive ints, received {shape!r}")
    return tuple(int(d) for d in dims)


class _LayerWeights:
    """Counting, getting, setting and checking a layer's arrays (a part of ``Layer``)."""

    # Set by Layer.__init__ and Layer.build.
    name: str
    dtype: Any
    built: bool
    params: dict[str, Any]
    state: dict[str, Any]

    @property
    def label(self) -> str:
        """How errors name this layer, e.g. ``Conv2D 'conv2d_1'``."""
        return f"{type(self).__name__} {self.name!r}"

    def count_params(self) -> int:
        """Number of weights, trainable and not (BatchNormalization's moving statistics count)."""
        if not self.built:
            raise ValueError(f"{self.label} is not built yet: call build(input_shape) first")
        return sum(int(math.prod(a.shape)) for a in (*self.params.values(), *self.state.values()))

    def count_trainable_params(self) -> int:
        """The number of trainable weights (scalars) in this layer."""
        return sum(int(math.prod(a.shape)) for a in self.params.values())

    # ----- weights ---------------------------------------------------------------------------
    def get_weights(self) -> dict[str, Any]:
        """All arrays that define the layer: ``params`` then ``state``."""
        return {**self.params, **self.state}

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Replace the layer's arrays; names, shapes and dtypes must match the built layer."""
        if not self.built:
            raise ValueError(f"{self.label} is not built yet: call build(input_shape) first")
        self._check_weights(weights, {k: v.shape for k, v in self.get_weights().items()})
        for k, arr in weights.items():
            target = self.params if k in self.params else self.state
            target[k] = xp.array(arr, dtype=self.dtype)

    def _check_weights(self, weights: dict[str, Any], expected: dict[str, tuple]) -> None:
        problems = [f"missing {k!r}" for k in expected if k not in weights]
        problems += [f"unexpected {k!r}" for k in weights if k not in expected]
        for k, arr in weights.items():
            if k in expected and tuple(np.shape(arr)) != tuple(expected[k]):
                problems.append(f"{k!r} has shape {tuple(np.shape(arr))}, "
                                f"expected {tuple(expected[k])}")
        if problems:
            raise ValueError(f"{self.label}: weights do not match: " + "; ".join(problems))
