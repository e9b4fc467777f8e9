"""Symbolic tensors and nodes: how calling layers on ``cnnumpy.Input`` records a graph.

    x = cnnumpy.Input((32, 32, 3))
    y = layers.Conv2D(16, 3, padding="same")(x)   # builds the layer, records a Node

A :class:`Node` joins one call of one layer to its input tensors and its output tensor. A
layer called twice (a shared layer) has two nodes and one set of weights. Nodes are numbered
in the order they are made, so sorting by number is a topological order (a node's inputs
always exist before it); :func:`collect_nodes` keeps only what an output needs.

Shapes are per sample (no batch axis), as everywhere in cnnumpy.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.layers.base import Layer, check_shape

_node_ids = itertools.count()


class SymbolicTensor:
    """The output of a layer in a graph under construction: a shape and a dtype, no values.

    Attributes:
        shape: per-sample shape, e.g. ``(32, 32, 16)``.
        dtype: the dtype its values will have.
        node: the :class:`Node` that produces it.
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, node: Node) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node

    @property
    def layer(self) -> Layer:
        """The layer whose call produced this tensor."""
        return self.node.layer

    def __repr__(self) -> str:
        return (f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}) "
                f"dtype={self.dtype.name} from {self.layer.label}>")


class Node:
    """One call of ``layer`` on ``inputs`` (symbolic tensors), producing ``output``."""

    def __init__(self, layer: Layer, inputs: list[SymbolicTensor], shape: tuple[int, ...],
                 dtype: Any) -> None:
        self.id = next(_node_ids)
        self.layer = layer
        self.inputs = list(inputs)
        self.output = SymbolicTensor(shape, dtype, self)

    def __repr__(self) -> str:
        return f"<Node {self.id} of {self.layer.label}>"


class InputLayer(Layer):
    """The layer behind :func:`Input`: it holds the input's shape and passes values through.

    Shape:
        ``(N, *shape)`` -> ``(N, *shape)``.
    """

    input_shape: tuple[int, ...]  # never None: __init__ requires a shape

    def __init__(self, shape: Any = None, *, name: str | None = None,
                 dtype: str | None = None, input_shape: Any = None) -> None:
        shape = input_shape if shape is None else shape
        if shape is None:
            raise ValueError("InputLayer: shape is required, e.g. Input((28, 28, 1))")
        super().__init__(input_shape=shape, name=name, dtype=dtype)
        self.build(self.input_shape)

    def call(self, x: Any, training: bool) -> Any:
        return x

    def call_backward(self, dy: Any) -> Any:
        return dy

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.input_shape),
                "dtype": np.dtype(self.dtype).name}


def Input(shape: Any, dtype: str | None = None, name: str | None = None) -> SymbolicTensor:
    """A symbolic model input of per-sample ``shape``, e.g. ``Input((32, 32, 3))``.

    Args:
        shape: per-sample shape (no batch axis).
        dtype: "float32" or "float64"; default ``cnnumpy.backend.floatx()``. Layers called on
            it (and on what follows) are built with this dtype unless they set their own.
        name: the input layer's name (default ``input_layer``, numbered when taken).

    Example:
        A residual block with the functional API:

        >>> from cnnumpy import layers
        >>> inputs = cnnumpy.Input((8, 8, 1))
        >>> x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        >>> outputs = layers.Add()([x, layers.Conv2D(4, 1)(inputs)])
        >>> cnnumpy.Model(inputs, outputs).output_shape
        (8, 8, 4)
    """
    shape = check_shape(shape, "Input: shape")
    layer = InputLayer(shape, name=name, dtype=None if dtype is None else
                       backend.as_float_dtype(dtype, "Input").name)
    node = Node(layer, [], shape, layer.dtype)
    return node.output


def is_symbolic(x: Any) -> bool:
    """True for a symbolic tensor or a list/tuple holding one."""
    if isinstance(x, (list, tuple)):
        return any(isinstance(t, SymbolicTensor) for t in x)
    return isinstance(x, SymbolicTensor)


def _describe(t: SymbolicTensor) -> str:
    return f"{t.layer.label} (output shape {t.shape})"


def call_layer(layer: Layer, inputs: Any) -> SymbolicTensor:
    """Record ``layer`` called on symbolic ``inputs``: build the layer if needed, check the
    shapes, and return the output tensor.

    Raises:
        ValueError: naming ``layer``, the layers that produce its inputs and both shapes, when
            the shapes do not fit, or when a merge layer is not given a list (or another layer
            is given one).
        TypeError: an input is not a symbolic tensor (a mix of arrays and tensors).
    """
    from cnnumpy.layers.merge import Merge

    merge = isinstance(layer, Merge)
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    for t in tensors:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{layer.label}: expected symbolic tensors (from cnnumpy.Input or "
                            f"a layer called on one), received {type(t).__name__}")
    if merge != isinstance(inputs, (list, tuple)):
        raise ValueError(f"{layer.label}: " + (
            "a merge layer takes a list of tensors, e.g. Add()([a, b]); received one tensor"
            if merge else f"takes one tensor, received a list of {len(tensors)}"))
    shapes = [t.shape for t in tensors]
    shape: Any = shapes if merge else shapes[0]
    sources = ", ".join(_describe(t) for t in tensors)
    if layer.built:
        expected: Any = layer.input_shape  # a list of shapes for a merge layer
        if (list(map(tuple, expected)) if merge else tuple(expected)) != shape:
            raise ValueError(f"{layer.label} was built for input shape {expected}, but is "
                             f"called on {sources}")
    else:
        if not merge and layer.input_shape is not None and layer.input_shape != shape:
            raise ValueError(f"{layer.label} was given input_shape={layer.input_shape}, but is "
                             f"called on {sources}")
        layer.dtype = layer.dtype or tensors[0].dtype
        try:
            layer.build(shape)
        except ValueError as exc:
            raise ValueError(f"{layer.label} cannot be called on {sources}: {exc}") from None
    out_shape = layer.compute_output_shape(shape)
    return Node(layer, tensors, out_shape, layer.dtype).output


def collect_nodes(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor],
                  where: str = "Model") -> list[Node]:
    """The nodes that compute ``outputs`` from ``inputs``, in topological order (the input
    nodes first).

    Raises:
        ValueError: an output needs an input that is not among ``inputs`` ("graph
            disconnected"), or two different layers share a name.
    """
    allowed = {id(t.node) for t in inputs}
    seen: dict[int, Node] = {}
    stack = [t.node for t in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        if not node.inputs and id(node) not in allowed:
            raise ValueError(f"{where}: graph disconnected: the output needs {node.layer.label}, "
                             f"which is not among the model's inputs")
        stack.extend(t.node for t in node.inputs if id(t.node) not in allowed)
    for t in inputs:
        seen.setdefault(id(t.node), t.node)
    nodes = sorted(seen.values(), key=lambda n: n.id)
    names: dict[str, Layer] = {}
    for node in nodes:
        other = names.setdefault(node.layer.name, node.layer)
        if other is not node.layer:
            raise ValueError(f"{where}: two different layers are named {node.layer.name!r} "
                             f"({other.label} and {node.layer.label}); layer names must be "
                             "unique, as model files refer to layers by name")
    return nodes
