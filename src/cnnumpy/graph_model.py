"""``Model``: a graph of layers (Keras' functional API), with the surface of ``Sequential``.

    x = cnnumpy.Input((32, 32, 3))
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Add()([h, layers.Conv2D(16, 3, padding="same")(h)])
    model = cnnumpy.Model(x, layers.Dense(10, activation="softmax")(layers.Flatten()(y)))

Forward runs the nodes in topological order. Backward runs them in reverse; where a tensor
feeds several nodes, its gradients are summed into a new array (never added in place into
one a branch still holds). A layer called more than once (shared) runs each call through a
shallow copy of itself, as :mod:`cnnumpy.shards` does for batch slices: weights shared,
forward caches and gradients its own; the layer's gradients are the sum of its calls'.

Training, evaluation and files (``compile``, ``fit`` through
:func:`cnnumpy.training.run_fit`, ``evaluate``, ``predict``, ``train_on_batch``, ``save``...)
are :class:`cnnumpy.model_base.BaseModel`'s, which ``Sequential`` shares; this class runs the
graph's passes.
"""

from __future__ import annotations

import copy
from typing import Any

from cnnumpy.graph import InputLayer, Node, SymbolicTensor, collect_nodes
from cnnumpy.layers import Layer
from cnnumpy.layers.merge import Merge
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
        self._runners: list[Layer] = []  # the last forward's layer (or copy) per node

    # ----- shapes and layers -----------------------------------------------------------------
    built = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input.shape

    @property
    def output_shape(self) -> tuple[int, ...]:
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

    def _runner(self, layer: Layer) -> Layer:
        if len(self._calls[id(layer)]) == 1:
            return layer
        twin = copy.copy(layer)  # a call of a shared layer: its own caches and gradients
        twin.grads = {key: None for key in layer.grads}
        return twin

    def _run(self, x: Any, training: bool, logits: bool = False) -> Any:
        uses = dict(self._uses)
        values = {id(self.input): x}
        self._runners = [self._runner(node.layer) for node in self._nodes]
        for node, runner in zip(self._nodes[1:], self._runners[1:], strict=True):
            args = [values[id(t)] for t in node.inputs]
            for t in node.inputs:  # drop what no later node reads
                uses[id(t)] -= 1
                if uses[id(t)] == 0 and t is not self.output:
                    values.pop(id(t))
            arg = args if isinstance(runner, Merge) else args[0]
            if logits and node.output is self.output:
                values[id(node.output)] = runner.forward_logits(arg, training)
            else:
                values[id(node.output)] = runner.forward(arg, training)
        return values[id(self.output)]

    def forward(self, x: Any, training: bool = False) -> Any:
        """Run the graph on a batch (no batching, no checks beyond the layers' own).

        Shape:
            ``(N, *input_shape)`` -> ``(N, *output_shape)``.
        """
        return self._run(x, training)

    def _needs_input_grad(self) -> list[bool]:
        """Per node: does some layer upstream of its inputs have weights?"""
        upstream: dict[int, bool] = {}  # by id(output tensor): weights at or before it
        needs = []
        for node in self._nodes:
            need = any(upstream[id(t)] for t in node.inputs)
            needs.append(need)
            upstream[id(node.output)] = need or bool(node.layer.params)
        return needs

    def backward(self, dy: Any, logits: bool = False) -> Any:
        """Back through the last forward from ``dy``, the gradient of the output (of the
        output layer before its activation when ``logits``); fills every layer's ``grads``
        and returns the gradient of the input.

        Shape:
            ``(N, *output_shape)`` -> ``(N, *input_shape)``.
        """
        return self._backward_nodes(dy, logits, input_grad=True)

    def _backward_nodes(self, dy: Any, logits: bool, input_grad: bool) -> Any:
        if len(self._runners) != len(self._nodes):
            raise ValueError(f"Model {self.name!r}: backward called before forward")
        needs = [True] * len(self._nodes) if input_grad else self._needs_input_grad()
        grads = {id(self.output): dy}
        for node, runner, need in zip(self._nodes[:0:-1], self._runners[:0:-1],
                                      needs[:0:-1], strict=True):
            g = grads.pop(id(node.output), None)
            if g is None:  # nothing downstream needed it (no weights on the way)
                continue
            runner.needs_input_grad = need
            if logits and node.output is self.output:
                dx = runner.call_backward(g)
            else:
                dx = runner.backward(g)
            for t, d in zip(node.inputs, dx if isinstance(runner, Merge) else [dx],
                            strict=True):
                if d is not None:  # a new array for a tensor with several consumers
                    grads[id(t)] = d if id(t) not in grads else grads[id(t)] + d
        runners = {id(n): r for n, r in zip(self._nodes, self._runners, strict=True)}
        for nodes in self._calls.values():  # a shared layer: the sum of its calls' gradients
            if len(nodes) > 1:
                layer, calls = nodes[0].layer, [runners[id(n)] for n in nodes]
                for key in layer.params:
                    parts = [c.grads[key] for c in calls if c.grads.get(key) is not None]
                    layer.grads[key] = sum(parts[1:], parts[0]) if parts else None
        return grads.get(id(self.input))

    def _outputs(self, x: Any, training: bool, logits: bool) -> Any:
        return self._run(x, training, logits)

    def _backward_outputs(self, grad: Any, logits: bool) -> None:
        self._backward_nodes(grad, logits, input_grad=False)

    def _infer(self, x: Any) -> Any:
        return self._run(x, training=False)

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
