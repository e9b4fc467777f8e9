"""Merge layers: Add, Subtract, Multiply, Average and Concatenate (as in Keras).

A merge layer takes a list of tensors, ``Add()([a, b])``, and returns one. They share one
base, :class:`Merge`: subclasses give the per-sample output shape, the merge itself
(``_merge``) and its input gradients (``_merge_backward``). Every input gradient is an array
of its own, so a branch that changes its gradient in place cannot change another's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional.fast import add_relu
from cnnumpy.layers.base import Layer, check_shape


class Merge(Layer):
    """Base class of the merge layers: a list of at least two inputs, one output.

    Args:
        name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        A list of ``(N, *shape_i)`` -> ``(N, *output_shape)``.
    """

    min_inputs = 2
    max_inputs: int | None = None
    input_shape: Any
    """A list of per-sample shapes, one per input, once built (one shape for other layers)."""

    def __init__(self, *, name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self._cache: list[Any] | None = None

    # ----- shapes ----------------------------------------------------------------------------
    def _shapes(self, input_shapes: Any) -> list[tuple[int, ...]]:
        if not isinstance(input_shapes, (list, tuple)) or not all(
                isinstance(s, (list, tuple)) for s in input_shapes):
            raise ValueError(f"{self.label}: expected a list of input shapes, "
                             f"received {input_shapes!r}")
        count = len(input_shapes)
        if count < self.min_inputs or (self.max_inputs is not None and count > self.max_inputs):
            wanted = (f"exactly {self.max_inputs}" if self.max_inputs == self.min_inputs
                      else f"at least {self.min_inputs}")
            raise ValueError(f"{self.label}: expected {wanted} inputs, received {count}")
        return [check_shape(s[1:] if len(s) and s[0] is None else s, self.label)
                for s in input_shapes]

    def compute_output_shape(self, input_shape: Any) -> tuple[int, ...]:
        return self._output_shape_of(self._shapes(input_shape))

    def _output_shape_of(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Equal shapes give that shape; anything else is a ValueError naming them."""
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{self.label}: all inputs must have the same shape, received "
                             f"{', '.join(str(s) for s in shapes)}")
        return shapes[0]

    def build(self, input_shape: Any, weights: dict[str, Any] | None = None) -> None:
        """Check the list of input shapes; ``weights``, as for any layer, must name the
        layer's arrays: a merge layer has none."""
        if weights:
            self._check_weights(weights, {})
        shapes = self._shapes(input_shape)
        self._output_shape_of(shapes)
        if self.dtype is None:
            self.dtype = backend.floatx()
        self.input_shape = shapes
        self.grads = {}
        self.built = True

    # ----- forward and backward --------------------------------------------------------------
    def forward(self, inputs: Any, training: bool = False) -> Any:
        """Merge a list of batches (building the layer on first use).

        Raises:
            ValueError: not a list, the wrong number of inputs, or shapes that do not fit.
        """
        z = self._merge(self._checked(inputs))
        self._output_of_forward = z.shape
        return z

    def _checked(self, inputs: Any) -> list[Any]:
        """The inputs as arrays of the layer's dtype, checked (building the layer on first
        use)."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{self.label}: expected a list of inputs, received "
                             f"{type(inputs).__name__}")
        xs = [x if isinstance(x, xp.ndarray) else xp.asarray(x) for x in inputs]
        for x in xs:
            if x.dtype.kind not in "fiub" or x.ndim < 2:
                raise ValueError(f"{self.label}: expected batches of real numbers (batch, ...), "
                                 f"received dtype {x.dtype.name!r}, shape {x.shape}")
        shapes = [x.shape[1:] for x in xs]
        if not self.built:
            if self.dtype is None and any(x.dtype == np.float64 for x in xs):
                self.dtype = np.dtype(np.float64)
            self.build(shapes)
        if (len(shapes) != len(self.input_shape) or any(s != e for s, e in zip(
                shapes, self.input_shape, strict=False)) or len({len(x) for x in xs}) != 1):
            raise ValueError(f"{self.label}: expected inputs of shapes "
                             f"{[(None, *s) for s in self.input_shape]}, received "
                             f"{[x.shape for x in xs]}")
        return [x if x.dtype == self.dtype else x.astype(self.dtype) for x in xs]

    def forward_logits(self, inputs: Any, training: bool = False) -> Any:
        return self.forward(inputs, training)

    def backward(self, dy: Any) -> list[Any]:
        """The gradient of each input (a list, in the inputs' order), each its own array."""
        if self._output_of_forward is None:
            raise ValueError(f"{self.label}: backward called before forward")
        if tuple(np.shape(dy)) != self._output_of_forward:
            raise ValueError(f"{self.label}: backward expected dy of shape "
                             f"{self._output_of_forward}, received {tuple(np.shape(dy))}")
        return self._merge_backward(xp.asarray(dy, dtype=self.dtype))

    def call_backward(self, dy: Any) -> list[Any]:
        return self.backward(dy)

    def _merge(self, xs: list[Any]) -> Any:
        raise NotImplementedError

    def _merge_backward(self, dy: Any) -> list[Any]:
        raise NotImplementedError

    def _cached(self) -> list[Any]:
        """What the last ``_merge`` kept for ``_merge_backward``."""
        if self._cache is None:
            raise ValueError(f"{self.label}: backward called before forward")
        return self._cache

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name}
        if self.dtype is not None:
            config["dtype"] = np.dtype(self.dtype).name
        return config


class Add(Merge):
    """Element-wise sum of equal-shaped inputs: ``x_1 + x_2 + ...``."""

    _relu_output: Any = None  # the last training forward_relu's output

    def _merge(self, xs: list[Any]) -> Any:
        self._cache = [len(xs)]
        z = xs[0] + xs[1]
        for x in xs[2:]:
            z += x  # z is this call's own array
        return z

    def _merge_backward(self, dy: Any) -> list[Any]:
        return [dy.copy() for _ in range(self._cached()[0])]

    def forward_relu(self, inputs: Any, training: bool = False,
                     into: int | None = None) -> Any:
        """``max(x_1 + x_2 + ..., 0)`` in one pass (:mod:`cnnumpy.functional.fast.add_relu`),
        written into input ``into`` when given (the caller's own buffer, which nothing else
        reads); :meth:`backward_relu` goes back through both. The graph runs a ReLU after an
        ``Add`` so."""
        xs = self._checked(inputs)
        y = add_relu.forward(xs, None if into is None else xs[into])
        return self.adopt_relu_output(y, len(xs), training)

    def adopt_relu_output(self, y: Any, count: int, training: bool = True) -> Any:
        """Take ``y`` as :meth:`forward_relu`'s output of ``count`` inputs (also where made
        before: :meth:`~cnnumpy.layers.BatchNormalization.forward_add_relu`)."""
        self._cache = [count]
        self._relu_output = y if training else None
        self._output_of_forward = y.shape
        return y

    def relu_grads(self, grads: list[Any]) -> tuple[Any, list[Any]]:
        """The last training :meth:`forward_relu`'s output and ``grads``, its gradients from
        each of its consumers, checked against it and of this layer's dtype."""
        y = self._relu_output
        if y is None:
            raise ValueError(f"{self.label}: backward_relu called before a training "
                             "forward_relu")
        for g in grads:
            if tuple(np.shape(g)) != y.shape:
                raise ValueError(f"{self.label}: backward expected gradients of shape "
                                 f"{y.shape}, received {tuple(np.shape(g))}")
        return y, [xp.asarray(g, dtype=self.dtype) for g in grads]

    def backward_relu(self, grads: list[Any]) -> list[Any]:
        """The inputs' gradients (each its own array) from ``grads``, the gradients of the
        last :meth:`forward_relu`'s output from each of its consumers, summed."""
        y, grads = self.relu_grads(grads)
        return add_relu.backward(grads, y, self._cached()[0])


class Subtract(Merge):
    """Difference of two equal-shaped inputs: ``x_1 - x_2``."""

    max_inputs = 2

    def _merge(self, xs: list[Any]) -> Any:
        return xs[0] - xs[1]

    def _merge_backward(self, dy: Any) -> list[Any]:
        return [dy.copy(), -dy]


class Multiply(Merge):
    """Element-wise product of equal-shaped inputs: ``x_1 * x_2 * ...``."""

    def _merge(self, xs: list[Any]) -> Any:
        self._cache = xs
        z = xs[0] * xs[1]
        for x in xs[2:]:
            z *= x
        return z

    def _merge_backward(self, dy: Any) -> list[Any]:
        xs = self._cached()
        grads = []
        for i in range(len(xs)):
            g = dy.copy()
            for j, x in enumerate(xs):
                if j != i:
                    g *= x
            grads.append(g)
        return grads


class Average(Merge):
    """Element-wise mean of equal-shaped inputs: ``(x_1 + ... + x_n) / n``."""

    def _merge(self, xs: list[Any]) -> Any:
        self._cache = [len(xs)]
        z = xs[0] + xs[1]
        for x in xs[2:]:
            z += x
        z /= len(xs)
        return z

    def _merge_backward(self, dy: Any) -> list[Any]:
        n = self._cached()[0]
        return [dy / n for _ in range(n)]


class Concatenate(Merge):
    """Join inputs along ``axis`` (default the channels); other axes must agree.

    Args:
        axis: an axis of the batched tensor other than the batch axis 0, e.g. -1 (channels).
        name, dtype: see :class:`Merge`.

    Shape:
        ``[(N, H, W, C_1), (N, H, W, C_2), ...]`` -> ``(N, H, W, C_1 + C_2 + ...)`` for -1.
    """

    def __init__(self, axis: int = -1, *, name: str | None = None,
                 dtype: str | None = None) -> None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"Concatenate: axis must be a non-zero int (axis 0 is the batch), "
                             f"received axis={axis!r}")
        self.axis = int(axis)
        super().__init__(name=name, dtype=dtype)

    def _sample_axis(self, ndim: int) -> int:
        """The axis within a per-sample shape of ``ndim`` dimensions."""
        axis = self.axis - 1 if self.axis > 0 else self.axis + ndim
        if not 0 <= axis < ndim:
            raise ValueError(f"{self.label}: axis={self.axis} is out of range for inputs of "
                             f"{ndim + 1} dimensions (batch included)")
        return axis

    def _output_shape_of(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"{self.label}: inputs must have the same number of dimensions, "
                             f"received {', '.join(str(s) for s in shapes)}")
        axis = self._sample_axis(len(shapes[0]))
        drop = [s[:axis] + s[axis + 1:] for s in shapes]
        if any(d != drop[0] for d in drop):
            raise ValueError(f"{self.label}: inputs must agree on every axis but "
                             f"axis={self.axis}, received "
                             f"{', '.join(str(s) for s in shapes)}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def _merge(self, xs: list[Any]) -> Any:
        axis = self._sample_axis(xs[0].ndim - 1) + 1
        self._cache = [axis, np.cumsum([x.shape[axis] for x in xs])[:-1]]
        return xp.concatenate(xs, axis=axis)

    def _merge_backward(self, dy: Any) -> list[Any]:
        axis, bounds = self._cached()
        return [xp.ascontiguousarray(part) for part in xp.split(dy, bounds, axis=axis)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


MERGE_LAYERS: dict[str, type[Merge]] = {
    cls.__name__: cls for cls in (Add, Subtract, Multiply, Average, Concatenate)}
"""The merge layers that graph model files may name (a stack has no place for them, so they
are not in :data:`cnnumpy.layers.LAYERS`)."""
