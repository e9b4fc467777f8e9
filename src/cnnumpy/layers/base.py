"""The Layer base class: the lifecycle every layer shares.

A layer's life, as in Keras 3:

1. ``__init__`` validates and stores its arguments (the error quotes the bad value).
2. ``build(input_shape)`` creates ``params`` (trainable arrays) and ``state`` (non-trainable).
3. ``forward(x, training)`` computes the output and keeps only what ``backward`` needs.
4. ``backward(dy)`` fills ``grads`` (same keys and shapes as ``params``) and returns ``dx``.
   It never changes a weight: optimizers do that, from ``grads``.

Shapes given to ``build`` and ``compute_output_shape`` are per-sample (no batch axis), as in
``input_shape=(28, 28, 1)``; a leading ``None`` for the batch axis is accepted and kept.

Subclasses implement ``_output_shape(input_shape)``, ``call(x, training)`` and
``call_backward(dy)``; a layer with weights also ``weight_shapes(input_shape)`` (the shape of
each array, computed without allocating) and ``_initial_value(name, shape)``. The base adds
input checks, lazy building, building from given arrays (a model file's), the optional
activation and the config round trip; ``label``, the weight accessors (``get_weights``,
``set_weights``, ``count_params``) and ``check_shape`` come from
:mod:`cnnumpy.layers._base_weights`.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections import defaultdict
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional import activations
from cnnumpy.layers._base_weights import _LayerWeights
from cnnumpy.layers._base_weights import check_shape as check_shape

_name_counters: dict[str, itertools.count] = defaultdict(itertools.count)
_CACHES = ("_cache", "_act_cache", "_relu_input", "_relu_output", "_x", "_mask")
"""The attributes in which layers keep what their backward needs (:meth:`Layer.release`)."""


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


class Layer(_LayerWeights):
    """Base class of all layers.

    Args:
        activation: name of an activation applied to the output, or None.
        input_shape: per-sample input shape, e.g. ``(28, 28, 1)``; only the first layer of a
            model needs it.
        name: a name for summaries and model files (default: from the class name).
        dtype: "float32" or "float64" for the weights; default: the input's float64 if it is
            one, else ``cnnumpy.backend.floatx()``.
    """

    def __init__(self, *, activation: str | None = None, input_shape: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        cls = type(self).__name__
        if name is None:
            base = _snake_case(cls)
            n = next(_name_counters[base])
            name = base if n == 0 else f"{base}_{n}"
        elif not isinstance(name, str) or not name:
            raise ValueError(f"{cls}: name must be a non-empty string, received name={name!r}")
        self.name = name
        self.activation = None if activation in (None, "linear") else activation
        self._act = activations.get(activation, f"{cls} {name!r}")
        self.input_shape = None if input_shape is None else check_shape(
            input_shape, f"{cls} {name!r}: input_shape")
        self.dtype = None if dtype is None else backend.as_float_dtype(dtype, f"{cls} {name!r}")
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.built = False
        self._act_cache: tuple | None = None
        self._output_of_forward: tuple | None = None  # shape of the last output, for backward
        # Sequential sets this to False on its first layer, whose input gradient (with respect
        # to the images) nobody needs; a layer may then skip computing it and return None.
        self.needs_input_grad = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ----- shapes and building -------------------------------------------------------------
    def _built_shape(self) -> tuple[int, ...]:
        """The per-sample input shape, set by ``build``; a ValueError before."""
        if self.input_shape is None:
            raise ValueError(f"{self.label} is not built yet: call build(input_shape) first")
        return self.input_shape

    def _built_dtype(self) -> np.dtype:
        """The weights' dtype, set by ``build``; a ValueError before."""
        if self.dtype is None:
            raise ValueError(f"{self.label} is not built yet: call build(input_shape) first")
        return self.dtype

    def _split_batch(self, input_shape: Any) -> tuple[bool, tuple[int, ...]]:
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else input_shape
        has_batch = isinstance(shape, tuple) and len(shape) > 0 and shape[0] is None
        return has_batch, check_shape(shape[1:] if has_batch else shape, f"{self.label}")

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """Per-sample output shape for a per-sample input shape (a leading None is kept)."""
        has_batch, shape = self._split_batch(input_shape)
        out = self._output_shape(shape)
        return (None, *out) if has_batch else out

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    state_names: tuple[str, ...] = ()
    """The names in :meth:`weight_shapes` that are non-trainable state, not params."""

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of every array ``build(input_shape)`` makes, params then state.

        Computed from the config alone, without allocating anything, so that a model file's
        tensors can be checked against its config before any weight exists. A layer written
        with its own ``_create_weights`` instead gets its shapes from a throwaway build (which
        allocates, and leaves the random generator as it was).
        """
        if not self._own_create_weights():
            return {}
        probe = copy.copy(self)
        probe.params, probe.state = {}, {}
        probe.dtype = self.dtype or backend.floatx()
        state = backend.rng_state()
        try:
            probe._create_weights(input_shape)
        finally:
            backend.set_rng_state(state)
        return {k: tuple(np.shape(v)) for k, v in {**probe.params, **probe.state}.items()}

    def _own_create_weights(self) -> bool:
        """Whether the layer makes its weights in its own ``_create_weights`` (the older way)
        rather than from :meth:`weight_shapes` and ``_initial_value``."""
        return type(self)._create_weights is not Layer._create_weights

    def build(self, input_shape: Any, weights: dict[str, Any] | None = None) -> None:
        """Create the weights for inputs of the given per-sample shape.

        Args:
            input_shape: the per-sample input shape.
            weights: arrays to use instead of initial values (as from a model file): their
                names and shapes must be those of :meth:`weight_shapes`; nothing is drawn
                from the random generator.
        """
        _, shape = self._split_batch(input_shape)
        self._output_shape(shape)  # validates the shape, raising a ValueError naming the layer
        if self.dtype is None:
            self.dtype = backend.floatx()
        if weights is None:
            self.input_shape = shape
            self._create_weights(shape)
        elif self._own_create_weights():  # created, then replaced; the generator left alone
            self._check_weights(weights, self.weight_shapes(shape))
            self.input_shape = shape
            state = backend.rng_state()
            try:
                self._create_weights(shape)
            finally:
                backend.set_rng_state(state)
            for name, array in weights.items():
                target = self.params if name in self.params else self.state
                target[name] = xp.array(array, dtype=self.dtype)
        else:
            expected = self.weight_shapes(shape)
            self._check_weights(weights, expected)
            self.input_shape = shape
            for name in expected:
                target = self.state if name in self.state_names else self.params
                target[name] = xp.array(weights[name], dtype=self.dtype)
        self.grads = {k: None for k in self.params}
        self.built = True

    def _create_weights(self, input_shape: tuple[int, ...]) -> None:
        """Fill ``self.params`` and ``self.state`` with initial values, of the shapes
        :meth:`weight_shapes` gives."""
        for name, shape in self.weight_shapes(input_shape).items():
            target = self.state if name in self.state_names else self.params
            target[name] = self._initial_value(name, shape)

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        """The initial array for the weight ``name`` of the given shape."""
        raise NotImplementedError(f"{self.label}: no initial value for {name!r}")

    # ----- forward and backward --------------------------------------------------------------
    def _check_input(self, x: Any) -> Any:
        if not isinstance(x, xp.ndarray):
            x = xp.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{self.label}: expected a real-valued array, "
                            f"received dtype {x.dtype.name!r}")
        if not self.built:
            if self.dtype is None and x.dtype == np.float64:
                self.dtype = np.dtype(np.float64)
            if x.ndim < 2:
                raise ValueError(f"{self.label}: expected a batch of inputs (batch, ...), "
                                 f"received shape {x.shape}")
            self.build(x.shape[1:])
        shape = self._built_shape()
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            raise ValueError(f"{self.label}: expected input of shape (batch, "
                             f"{', '.join(map(str, shape))}), received {x.shape}")
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def forward(self, x: Any, training: bool = False) -> Any:
        """Compute the layer's output for a batch ``x``; building the layer on first use."""
        z = self.forward_logits(x, training)
        if self._act is None:
            return z
        y = self._act.forward(z)
        self._act_cache = (z, y)
        return y

    def forward_logits(self, x: Any, training: bool = False) -> Any:
        """The output before the layer's activation (for fused softmax/sigmoid losses)."""
        x = self._check_input(x)
        if len(x) == 0:  # no samples: an empty output of the right shape; no kernel runs
            z = xp.zeros((0, *self._output_shape(self._built_shape())), dtype=self.dtype)
        else:
            z = self.call(x, training)
        self._output_of_forward = z.shape
        return z

    def backward(self, dy: Any) -> Any:
        """Fill ``grads`` from the output gradient ``dy`` and return the input gradient."""
        expected = self._output_of_forward
        if expected is not None and tuple(np.shape(dy)) != expected:
            raise ValueError(f"{self.label}: backward expected dy of shape {expected} (the "
                             f"last forward's output), received {tuple(np.shape(dy))}")
        if expected is not None and expected[0] == 0:  # an empty batch: nothing to add up
            self.grads = {k: xp.zeros_like(v) for k, v in self.params.items()}
            return xp.zeros((0, *self._built_shape()), dtype=self.dtype)
        return self.call_backward(self._activation_backward(dy))

    def release(self) -> None:
        """Drop what the last forward kept for its backward (a training step does so once the
        layer's backward ran; another backward then needs another forward)."""
        for name in _CACHES:
            if getattr(self, name, None) is not None:
                setattr(self, name, None)

    def _activation_backward(self, dy: Any) -> Any:
        """The gradient before the activation, from the gradient after it."""
        if self._act is None:
            return dy
        if self._act_cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        z, y = self._act_cache
        return self._act.backward(dy, z, y)

    def call(self, x: Any, training: bool) -> Any:
        """The forward computation on a batch, given by each layer (``__call__`` checks and builds).

        Shape:
            ``x`` ``(batch, *input_shape)``; returns ``(batch, *output_shape)``.
        """
        raise NotImplementedError

    def call_backward(self, dy: Any) -> Any:
        """The backward computation: fills ``grads`` and returns ``dx``; never updates weights.

        Shape:
            ``dy`` ``(batch, *output_shape)``; returns ``(batch, *input_shape)``.
        """
        raise NotImplementedError

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward`` on arrays; on symbolic tensors (``cnnumpy.Input``), record a graph
        node and return its symbolic output (:mod:`cnnumpy.graph`)."""
        from cnnumpy import graph

        if graph.is_symbolic(x):
            return graph.call_layer(self, x)
        return self.forward(x, training)

    # ----- config ----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values; ``from_config`` rebuilds the layer."""
        config: dict[str, Any] = {"name": self.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        if self.dtype is not None:
            config["dtype"] = np.dtype(self.dtype).name
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """The layer that ``get_config`` describes (``cls(**config)``), not yet built."""
        return cls(**config)
