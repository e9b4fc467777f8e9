"""The passes through a graph ``Model``: its nodes as chains, each run as a stack is.

A chain is a run of single-input nodes where each takes the output of the one before it and
nothing else reads that output (``conv -> pool -> conv`` inside a residual branch). Each
chain goes through its own :class:`cnnumpy.passes.Passes`, so the stack's rewrites (a ReLU
moved after max pooling, a convolution and its max pooling fused) apply wherever a graph
holds the same chain. A merge heads a chain only where an ``Add`` is followed by a ReLU
that alone reads it (a residual block's end): the two run as one pass
(:data:`FUSE_ADD_RELU`), then the rest of the chain; any other merge runs on its own. In
training, when such an ``Add`` reads a chain's last batch norm and its other input is ready
by then, that batch norm makes the sum and the ReLU too (:data:`FUSE_BN_ADD_RELU`). Results
are those of the nodes run one by one, up to the order of float sums (:data:`REWRITE_CHAINS`
set to False runs them one by one).

A :class:`GraphPass` is one forward pass and its backward: the layer of each node (or, for
a layer called more than once, or on one slice of the batch per thread, a shallow copy of
it: weights shared, forward caches and gradients its own) and one ``Passes`` per chain.
Backward runs the chains in reverse; where a tensor feeds several nodes its gradients are
summed into a new array (never added in place into one a branch still holds) by the step
that made it, in the same pass as the ReLU's mask for a fused ``Add`` and ReLU. In a training
step each step's forward caches are dropped once its backward ran (:meth:`Layer.release`).

Measured (2-core machine shared with other jobs, so noisy; float32, a residual model on
28x28 digits: conv + pool, two residual blocks of two 3x3 convolutions, conv + pool, dense):
chains and batch slices off, then on, in two runs: training at batch 128 2,664 and 2,637 to
3,747 and 3,685 images/s, inference at 256 9,251 and 6,576 to 13,444 and 12,753 images/s.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from cnnumpy.graph import Node, SymbolicTensor
from cnnumpy.graph_fuse import BatchNormAddReLU, feeds
from cnnumpy.layers import BatchNormalization, Layer
from cnnumpy.layers.merge import Add, Merge
from cnnumpy.passes import Passes, relu_clip

REWRITE_CHAINS = True
"""Group single-consumer runs of nodes into chains that :class:`Passes` rewrites; False runs
every node on its own (for A/B tests and timings)."""
FUSE_ADD_RELU = True
"""Compute an ``Add`` and the ReLU after it in one pass (:meth:`Add.forward_relu`), and their
backward with the sum of the output's gradients in one pass."""
FUSE_BN_ADD_RELU = True
"""Training: where a chain ends in a ``BatchNormalization`` that only such an ``Add`` reads
and the sum's other input is ready, the batch norm makes the sum and its ReLU, and goes
back through them (:mod:`cnnumpy.graph_fuse`)."""


def chains(nodes: list[Node], output: SymbolicTensor) -> list[list[Node]]:
    """The nodes after the input, as chains in an order that runs each after its inputs.

    Chains are ordered by their first node, which comes after every node it reads (nodes
    are numbered in the order they are made); so does every later node of the chain.
    """
    consumers: dict[int, list[Node]] = {}
    for node in nodes:
        for t in node.inputs:
            consumers.setdefault(id(t), []).append(node)
    taken: set[int] = set()
    steps = []
    for node in nodes[1:]:
        if id(node) in taken:
            continue
        step = [node]
        taken.add(id(node))
        while REWRITE_CHAINS and step[-1].output is not output:
            users = consumers.get(id(step[-1].output), [])
            if len(users) != 1 or isinstance(users[0].layer, Merge) or (
                    isinstance(step[-1].layer, Merge) and not _add_relu(node.layer,
                                                                        users[0].layer)):
                break
            step.append(users[0])
            taken.add(id(users[0]))
        steps.append(step)
    return steps


def _add_relu(merge: Layer, layer: Layer) -> bool:
    """Whether ``layer`` after the merge ``merge`` is a ReLU computed with it (an ``Add``)."""
    return type(merge) is Add and relu_clip(layer) == (True, None)


def _total(pieces: list[Any]) -> Any:
    """The sum of a tensor's gradients from its consumers, in order (a new array for
    several)."""
    return pieces[0] if len(pieces) == 1 else sum(pieces[1:], pieces[0])


def _twin(layer: Layer) -> Layer:
    """A shallow copy of ``layer``: its weights, its own caches and gradients."""
    twin = copy.copy(layer)
    twin.grads = {key: None for key in layer.grads}
    return twin


class GraphPass(BatchNormAddReLU):
    """One forward pass through ``model``'s chains and the backward pass of that forward.

    Args:
        model: the graph ``Model``.
        copies: run every node through a copy of its layer (for one slice of the batch per
            thread); otherwise only the calls of shared layers are copies.
    """

    def __init__(self, model: Any, copies: bool = False,
                 steps: list[list[Node]] | None = None) -> None:
        self.model = model
        self.steps = model._steps if steps is None else steps
        self.runners = {id(n): _twin(n.layer) if copies or len(model._calls[id(n.layer)]) > 1
                        else n.layer for n in model._nodes}
        self.passes = [Passes() for _ in self.steps]
        self.fused: set[int] = set()  # the steps whose Add and ReLU ran as one, by index
        self.feeds = feeds(self.steps, model._uses)
        self.outside: set[int] = set()  # chains whose last layer ran on its own (see feeds)
        self.ahead: dict[int, Any] = {}  # Add step -> its output, made by a batch norm
        self.made: dict[int, int] = {}  # Add step -> the chain whose batch norm made it
        self.waiting: dict[int, tuple[Any, list[Any]]] = {}  # chain -> (y, y's gradients)

    def forward(self, x: Any, training: bool, logits: bool = False,
                keep: dict[int, Any] | None = None, fold: bool = False) -> Any:
        """The model's output for the batch ``x`` (before the output layer's activation when
        ``logits``). ``keep``, a dict, gets every tensor's value by ``id(tensor)`` (nothing
        is dropped once read); ``fold``: batch norms folded into convolutions (inference
        only, no backward)."""
        model = self.model
        uses = dict(model._uses)
        values = {} if keep is None else keep
        values[id(model.input)] = x
        self.fused, self.outside, self.ahead, self.made, self.waiting = set(), set(), {}, {}, {}
        for k, (step, passes) in enumerate(zip(self.steps, self.passes, strict=True)):
            args = [values[id(t)] for t in step[0].inputs]
            into = None  # an input that no later node reads and no layer keeps: writable
            for i, t in enumerate(step[0].inputs):  # drop what no later node reads
                uses[id(t)] -= 1
                if uses[id(t)] == 0 and t is not model.output and keep is None:
                    values.pop(id(t))
                    if type(t.layer) is BatchNormalization:  # keeps its input, not output
                        into = i if into is None else into
            runners = [self.runners[id(n)] for n in step]
            out = logits and step[-1].output is model.output
            if isinstance(runners[0], Merge):
                y = self._merge_forward(k, runners, args, training, out, fold, into)
            elif out:
                h = passes.forward(runners, args[0], training, stop=len(runners) - 1)
                y = runners[-1].forward_logits(h, training)
            elif FUSE_BN_ADD_RELU and training and keep is None and k in self.feeds:
                y = self._bn_add_relu_forward(k, runners, args[0], values, logits)
            else:
                y = passes.forward(runners, args[0], training, fold=fold)
            values[id(step[-1].output)] = y
        return values[id(model.output)]

    def _fuses_add_relu(self, k: int, logits: bool) -> bool:
        """Whether merge step ``k``'s head and the ReLU after it run as one pass (``logits``:
        this forward stops before the model's output activation)."""
        head, tail = self.steps[k][0].layer, self.steps[k][1:]
        relu = tail[0].layer if tail else None
        return (FUSE_ADD_RELU and relu is not None and head.built and relu.built
                and relu.dtype == head.dtype
                and not (logits and len(tail) == 1 and tail[0].output is self.model.output))

    def _merge_forward(self, k: int, runners: list[Layer], args: list[Any], training: bool,
                       logits: bool, fold: bool, into: int | None) -> Any:
        """A step that starts with a merge: the merge (with the ReLU after it, in one pass,
        where that applies), then the rest of the chain."""
        head, tail = cast(Merge, runners[0]), runners[1:]
        if k in self.ahead:  # computed by the batch norm before it
            y = cast(Add, head).adopt_relu_output(self.ahead.pop(k), len(args))
            self.fused.add(k)
            tail = tail[1:]
        elif self._fuses_add_relu(k, logits):
            y = cast(Add, head).forward_relu(args, training, into)
            self.fused.add(k)
            tail = tail[1:]
        else:
            y = head.forward(args, training)
        if not tail:
            return y
        passes = self.passes[k]
        if logits:
            return tail[-1].forward_logits(
                passes.forward(tail, y, training, stop=len(tail) - 1), training)
        return passes.forward(tail, y, training, fold=fold)

    def _step_backward(self, k: int, runners: list[Layer], pieces: list[Any],
                       logits: bool) -> list[Any]:
        """Back through step ``k`` from its output's gradients (one per consumer); returns
        the gradients of its inputs (None where not needed)."""
        head = 0 if not isinstance(runners[0], Merge) else 2 if k in self.fused else 1
        g: Any = None
        if head < len(runners):  # back through the (rest of the) chain
            g = _total(pieces)
            if logits:
                g = runners[-1].call_backward(g)
            elif k in self.outside:  # its last batch norm ran on its own
                g = runners[-1].backward(g)
            last = logits or k in self.outside
            g = self.passes[k].backward(g, stop=len(runners) - head - 1 if last else None)
            if g is None:
                return [None] * len(self.steps[k][0].inputs)
            pieces = [g]
        if head == 2 and k in self.made:  # its batch norm goes back through the Add too
            self.waiting[self.made[k]] = cast(Add, runners[0]).relu_grads(pieces)
            return [None] * len(self.steps[k][0].inputs)
        if head == 2:  # the fan-out's sum, the ReLU's mask and the Add's in one pass
            return cast(Add, runners[0]).backward_relu(pieces)
        if head == 1:
            return runners[0].backward(_total(pieces))
        return [g]

    def backward(self, dy: Any, logits: bool, needs: dict[int, bool] | None,
                 release: bool = False) -> Any:
        """Back from ``dy``, the gradient of the last forward's output; fills the runners'
        ``grads`` and returns the input gradient (None when no node needed it). ``needs``
        says, by ``id(node)``, whether a node's input gradient is needed (None: all);
        ``release``: each step's forward caches are dropped once its backward ran."""
        model = self.model
        grads: dict[int, list[Any]] = {id(model.output): [dy]}  # each consumer's gradient
        count = len(self.steps)
        for k in range(count - 1, -1, -1):
            step, passes = self.steps[k], self.passes[k]
            pieces = grads.pop(id(step[-1].output), None)
            waiting = self.waiting.pop(k, None)
            if pieces is None and waiting is None:  # nothing downstream needed it
                continue
            runners = [self.runners[id(n)] for n in step]
            for node, runner in zip(step, runners, strict=True):
                runner.needs_input_grad = True if needs is None else needs[id(node)]
            out = logits and step[-1].output is model.output
            if waiting is not None:
                dxs = self._bn_add_relu_backward(k, runners, *waiting, grads)
            else:
                dxs = self._step_backward(k, runners, cast(list, pieces), out)
            if release:
                passes.release()
                for runner in runners:
                    runner.release()
            for t, d in zip(step[0].inputs, dxs, strict=True):
                if d is not None:  # summed (into a new array) by the tensor's own step
                    grads.setdefault(id(t), []).append(d)
        pieces = grads.get(id(model.input))
        return None if pieces is None else _total(pieces)


def node_outputs(model: Any, x: Any) -> dict[int, Any]:
    """Every tensor's value for the batch ``x`` in inference mode, by ``id(tensor)``: the
    model's forward run node by node (a chain's rewrites would skip, e.g., a convolution's
    output fused with its pooling), keeping all values.

    Shape:
        x: ``(N, *model.input_shape)``; each value ``(N, *tensor.shape)``.
    """
    values: dict[int, Any] = {}
    GraphPass(model, steps=[[node] for node in model._nodes[1:]]).forward(
        x, training=False, keep=values)
    return values


def needs_input_grad(model: Any) -> dict[int, bool]:
    """By ``id(node)``: does some layer upstream of the node's inputs have weights?"""
    upstream: dict[int, bool] = {}  # by id(output tensor): weights at or before it
    needs = {}
    for node in model._nodes:
        need = any(upstream[id(t)] for t in node.inputs)
        needs[id(node)] = need
        upstream[id(node.output)] = need or bool(node.layer.params)
    return needs


def sum_grads(model: Any, runs: list[GraphPass]) -> None:
    """Each layer's gradients: the sum over its calls in every pass, in order (nothing to do
    for a layer that ran as itself, once)."""
    for layer in model.layers:
        twins = [run.runners[id(n)] for run in runs for n in model._calls[id(layer)]]
        if len(twins) == 1 and twins[0] is layer:
            continue
        for key in layer.params:
            parts = [t.grads[key] for t in twins if t.grads.get(key) is not None]
            layer.grads[key] = sum(parts[1:], parts[0]) if parts else None
