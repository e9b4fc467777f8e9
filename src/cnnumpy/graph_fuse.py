"""A training rewrite of graph models: a residual block's last batch norm makes the block's
sum and its ReLU, and goes back through them.

A basic residual block ends ``relu(BN(conv(...)) + shortcut)``. Where the ``Add`` and the
ReLU run as one step (:data:`cnnumpy.graph_run.FUSE_ADD_RELU`), the sum reads a batch norm's
output that nothing else reads, and the sum's other input is ready by the time that batch
norm runs, the batch norm adds the other input and applies the ReLU in its own second pass
(:meth:`cnnumpy.layers.BatchNormalization.forward_add_relu`), and the ``Add`` step takes the
result (:meth:`cnnumpy.layers.Add.adopt_relu_output`). Backward, the batch norm makes the
gradient through the ReLU and the sum (the consumers' gradients added, masked where the
output is not positive) in its own first pass and hands it to the other input
(:meth:`~cnnumpy.layers.BatchNormalization.backward_add_relu`). In ResNet-20 that is every
block: the branch's last batch norm where the shortcut is the block's input, the shortcut's
batch norm where it is a projection (the branch ran first). One pass over the activations and
one hand-over to the threads fewer each way per block, the same float operations in the same
order: the same bits (``tests/test_graph_add_relu.py``). Paired training steps (2026-12-07,
AMD EPYC VM, two threads): ResNet-20 1.020-1.023x at batch 32, 1.011x at 64, 1.019x at 128.

:class:`BatchNormAddReLU` is :class:`cnnumpy.graph_run.GraphPass`'s part that does it;
:data:`cnnumpy.graph_run.FUSE_BN_ADD_RELU` switches it off.
"""

from __future__ import annotations

from typing import Any, cast

from cnnumpy.functional.fast import add_relu
from cnnumpy.graph import Node
from cnnumpy.layers import BatchNormalization, Layer
from cnnumpy.layers.merge import Add, Merge
from cnnumpy.passes import Passes


def feeds(steps: list[list[Node]], uses: dict[int, int]) -> dict[int, int]:
    """Chain index -> the index of the ``Add``-headed step that alone reads the chain's last
    output, where that last node is a ``BatchNormalization`` (and the chain no merge)."""
    reads = {id(t): k for k, step in enumerate(steps) if type(step[0].layer) is Add
             for t in step[0].inputs}
    return {j: reads[id(step[-1].output)] for j, step in enumerate(steps)
            if type(step[-1].layer) is BatchNormalization
            and not isinstance(step[0].layer, Merge)
            and uses.get(id(step[-1].output)) == 1 and id(step[-1].output) in reads}


class BatchNormAddReLU:
    """The rewrite's forward and backward for one :class:`cnnumpy.graph_run.GraphPass`."""

    steps: list[list[Node]]
    passes: list[Passes]
    feeds: dict[int, int]
    outside: set[int]
    ahead: dict[int, Any]
    made: dict[int, int]

    def _fuses_add_relu(self, k: int, logits: bool) -> bool:
        raise NotImplementedError  # GraphPass's

    def _bn_add_relu_forward(self, j: int, runners: list[Layer], x: Any,
                             values: dict[int, Any], logits: bool) -> Any:
        """Chain ``j`` (see :attr:`feeds`), its last batch norm run on its own: with the sum
        and the ReLU of the ``Add`` step after it where that can be (the step then only
        takes the result), else alone."""
        h = self.passes[j].forward(runners, x, True, stop=len(runners) - 1)
        self.outside.add(j)
        bn, k = cast(BatchNormalization, runners[-1]), self.feeds[j]
        others = [values.get(id(t)) for t in self.steps[k][0].inputs
                  if t is not self.steps[j][-1].output]
        if len(others) == 1 and others[0] is not None and self._fuses_add_relu(k, logits):
            y = bn.forward_add_relu(h, others[0])
            if y is not None:
                self.ahead[k], self.made[k] = y, j
                return y
        return bn.forward(h, True)

    def _bn_add_relu_backward(self, j: int, runners: list[Layer], y: Any,
                              pieces: list[Any], grads: dict[int, list[Any]]) -> list[Any]:
        """Back through chain ``j``, whose last batch norm made the ``Add`` step's output
        ``y``, from ``pieces``, the gradients of ``y``: the batch norm goes back through the
        ReLU and the sum too, in its own first pass, and the sum's other input's gradient
        joins ``grads``."""
        bn, out = cast(BatchNormalization, runners[-1]), self.steps[j][-1].output
        made = bn.backward_add_relu(pieces, y)
        if made is None:  # through the ReLU and the sum on their own
            g = add_relu.backward(pieces, y, 1)[0]
            dx = bn.backward(g)
        else:
            dx, g = made
        for t in self.steps[self.feeds[j]][0].inputs:
            if t is not out:
                grads.setdefault(id(t), []).append(g)
        return [self.passes[j].backward(dx, stop=len(runners) - 1)]
