"""``Model``: a graph of layers (Keras' functional API), with the surface of ``Sequential``.

    x = cnnumpy.Input((32, 32, 3))
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Add()([h, layers.Conv2D(16, 3, padding="same")(h)])
    model = cnnumpy.Model(x, layers.Dense(10, activation="softmax")(layers.Flatten()(y)))

Forward runs the nodes in topological order, grouped into chains that get the stack's
rewrites, and a large enough batch in one slice per thread (:mod:`cnnumpy.graph_run`,
:mod:`cnnumpy.shards`). Backward runs them in reverse; where a tensor feeds several nodes,
its gradients are summed into a new array (never added in place into one a branch still
holds). A layer called more than once (shared) runs each call through a shallow copy of
itself: weights shared, forward caches and gradients its own; the layer's gradients are the
sum of its calls'.

Training, evaluation and files (``compile``, ``fit`` through
:func:`cnnumpy.training.run_fit`, ``evaluate``, ``predict``, ``train_on_batch``, ``save``...)
are :class:`cnnumpy.model_base.BaseModel`'s, which ``Sequential`` shares; this class runs the
graph's passes.
"""

from __future__ import annotations

from typing import Any

from cnnumpy import backend, shards
from cnnumpy.backend import xp
from cnnumpy.graph import InputLayer, Node, SymbolicTensor, collect_nodes
from cnnumpy.graph_run import GraphPass, chains, needs_input_grad, sum_grads
from cnnumpy.layers import Layer
from cnnumpy.model_base import BaseModel


def _one_tensor(value: Any, what: str) -> SymbolicTensor:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) != 1:
        raise ValueError(f"Model: exactly one {what} tensor is supported for now, received "
                         f"{len(items)}")
    if not isinstance(items[0], SymbolicTensor):
        raise TypeError(f"Model: {what}s must be symbolic tensors (from cnnumpy.Input and "
                        f"layers called on it), received {type(items[0]).__name__}")
    return items[0]


class Model(BaseModel):
    """A model from a symbolic input to a symbolic output (Keras' functional API).

    Args:
        inputs: the tensor returned by :func:`cnnumpy.Input` (or a list holding it).
        outputs: the tensor the model computes from it (or a list holding it).
        name: the model's name.

    Shape:
        Input ``(N, *inputs.shape)``, output ``(N, *outputs.shape)``; images are NHWC.
    """

    def __init__(self, inputs: Any, outputs: Any, name: str = "model") -> None:
        self.input = _one_tensor(inputs, "input")
        self.output = _one_tensor(outputs, "output")
        if self.input.node.inputs or not isinstance(self.input.layer, InputLayer):
            raise ValueError(f"Model: inputs must come from cnnumpy.Input, received the output "
                             f"of {self.input.layer.label}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"Model: name must be a non-empty string, received name={name!r}")
        super().__init__(name)
        self.dtype = None
        self._nodes: list[Node] = collect_nodes([self.input], [self.output])
        self.layers: list[Layer] = list({id(n.layer): n.layer for n in self._nodes}.values())
        self._calls: dict[int, list[Node]] = {}  # by id(layer): its nodes in this model
        for node in self._nodes:
            self._calls.setdefault(id(node.layer), []).append(node)
        self._uses: dict[int, int] = {}  # by id(tensor): how many inputs of nodes it is
        for node in self._nodes:
            for t in node.inputs:
                self._uses[id(t)] = self._uses.get(id(t), 0) + 1
        self._steps = chains(self._nodes, self.output)  # what runs, in order
        self._passes: list[GraphPass] = []  # the last forward's, one per slice of the batch
        self._parts: list[slice] | None = None  # the last training forward's slices

    # ----- shapes and layers -----------------------------------------------------------------
    built = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input shape, without the batch axis."""
        return self.input.shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One sample's output shape, without the batch axis."""
        return self.output.shape

    def build(self, input_shape: Any = None, dtype: Any = None) -> None:
        """A graph model is built when it is made; a different ``input_shape`` is an error."""
        if input_shape is not None and tuple(input_shape) != self.input_shape:
            raise ValueError(f"Model.build: the model takes inputs of shape {self.input_shape}, "
                             f"received input_shape={tuple(input_shape)}")

    def _ensure_built(self, x: Any) -> None:
        """Nothing to do: the graph was built by calling its layers."""

    def _require_built(self, what: str) -> None:
        """Nothing to do: the graph was built by calling its layers."""

    def node_index(self, node: Node) -> int:
        """The position of ``node`` among its layer's calls in this model (0 for the first)."""
        return self._calls[id(node.layer)].index(node)

    # ----- forward and backward --------------------------------------------------------------
    @property
    def _output_layer(self) -> Layer:
        return self.output.layer

    def forward(self, x: Any, training: bool = False) -> Any:
        """Run the graph on a batch (no batching, no checks beyond the layers' own).

        Shape:
            ``(N, *input_shape)`` -> ``(N, *output_shape)``.
        """
        self._passes = [GraphPass(self)]
        return self._passes[0].forward(x, training)

    def backward(self, dy: Any, logits: bool = False) -> Any:
        """Back through the last forward from ``dy``, the gradient of the output (of the
        output layer before its activation when ``logits``); fills every layer's ``grads``
        and returns the gradient of the input.

        Shape:
            ``(N, *output_shape)`` -> ``(N, *input_shape)``.
        """
        if len(self._passes) != 1:
            raise ValueError(f"Model {self.name!r}: backward called before forward")
        dx = self._passes[0].backward(dy, logits, needs=None)
        sum_grads(self, self._passes)
        return dx

    def _split(self, n: int, training: bool) -> list | None:
        """The batch's slices, one per thread (:mod:`cnnumpy.shards`), or None."""
        count = shards.count(self.layers, n, training)
        return None if count is None else backend.batch_slices(n, count)

    def _outputs(self, x: Any, training: bool, logits: bool) -> Any:
        parts = self._split(len(x), training)
        if parts is None:
            self._passes, self._parts = [GraphPass(self)], None
            return self._passes[0].forward(x, training, logits)
        self._passes = [GraphPass(self, copies=True) for _ in parts]
        self._parts = parts
        return xp.concatenate(backend.parallel_map(
            lambda i: self._passes[i].forward(x[parts[i]], training, logits),
            range(len(parts))))

    def _backward_outputs(self, grad: Any, logits: bool) -> None:
        needs = needs_input_grad(self)
        parts = self._parts
        if parts is None:
            self._passes[0].backward(grad, logits, needs, release=True)
        else:
            backend.parallel_map(lambda i: self._passes[i].backward(
                grad[parts[i]], logits, needs, release=True), range(len(parts)))
        sum_grads(self, self._passes)

    def _infer(self, x: Any) -> Any:
        parts = self._split(len(x), training=False)
        if parts is None:
            return GraphPass(self).forward(x, training=False, fold=True)
        runs = [GraphPass(self, copies=True) for _ in parts]
        return xp.concatenate(backend.parallel_map(
            lambda i: runs[i].forward(x[parts[i]], training=False, fold=True),
            range(len(parts))))

    # ----- description and config ------------------------------------------------------------
    def _summary_text(self) -> str:
        """One row per layer, with the layers it takes its inputs from (``name[call][0]``)."""
        from cnnumpy.graph_io import summary_table

        return summary_table(self)

    def get_config(self) -> dict[str, Any]:
        """Keras' functional config: each layer with its calls' inputs by layer name."""
        from cnnumpy.graph_io import graph_config

        return graph_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        """Rebuild a model from :meth:`get_config` (weights freshly initialized).

        Raises:
            ValueError: the config is malformed; see :func:`cnnumpy.graph_io.model_from_config`.
        """
        from cnnumpy.graph_io import model_from_config

        return model_from_config(config)
