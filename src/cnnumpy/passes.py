"""The forward and backward passes through a stack of layers, as ``Sequential`` runs them.

One rewrite makes them cheaper without changing a single result: a ReLU followed by max
pooling is applied after the pooling instead. Both are monotone, so
``max(relu(z)) == relu(max(z))`` exactly, and the pooled tensor is a quarter of the size (for
2x2 windows), so the ReLU and its gradient cost a quarter as much. Backward, the output
gradient is masked where the pooled output is zero and routed by the pool to the first
maximum of ``z``: where that maximum is positive it is also the first maximum of ``relu(z)``,
and where it is not, the gradient is zero either way. The layers themselves are unchanged,
so a layer used on its own behaves as documented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnumpy.backend import xp
from cnnumpy.layers import Layer, MaxPool2D


def relu_moved_after_pool(layers: Sequence[Layer]) -> frozenset[int]:
    """Indices ``i`` of the max-pooling layers whose preceding layer's ReLU is applied after
    the pooling: ``layers[i - 1]`` has ``activation="relu"`` and ``layers[i]`` is a
    :class:`MaxPool2D` without an activation of its own."""
    return frozenset(
        i for i in range(1, len(layers))
        if isinstance(layers[i], MaxPool2D) and layers[i].activation is None
        and layers[i - 1].activation == "relu")


class Passes:
    """Forward and backward through a list of layers, with ReLUs moved after max pooling.

    ``backward`` goes back through the layers of the last ``forward`` call, with the same
    rewrites, so the two always agree.
    """

    def __init__(self) -> None:
        self._layers: list[Layer] = []
        self._moved: frozenset[int] = frozenset()
        self._outputs: dict[int, Any] = {}  # pooled-then-ReLU outputs, for the backward masks

    def forward(self, layers: list[Layer], x: Any, training: bool,
                stop: int | None = None) -> Any:
        """Run ``layers[:stop]`` on the batch ``x`` and return the last output."""
        self._layers, self._moved, self._outputs = layers, relu_moved_after_pool(layers), {}
        moved = self._moved
        for i, layer in enumerate(layers[:stop]):
            if i + 1 in moved and (stop is None or i + 1 < stop):
                x = layer.forward_logits(x, training)  # its ReLU comes after the pool
            elif i in moved:
                x = layer.forward(x, training)
                xp.maximum(x, 0, out=x)  # in place: the pooled output is the pass's own
                if training:
                    self._outputs[i] = x
            else:
                x = layer.forward(x, training)
        return x

    def backward(self, grad: Any, stop: int | None = None) -> Any:
        """Back through the last forward's ``layers[:stop]`` from the gradient of their last
        output; returns the input gradient (None once no earlier layer has weights, as layers
        skip it)."""
        layers, moved = self._layers, self._moved
        count = len(layers) if stop is None else stop
        for i in reversed(range(count)):
            if grad is None:
                break
            layer = layers[i]
            if i in moved:
                if i not in self._outputs:
                    raise ValueError(f"{layer.label}: backward called before a training forward")
                grad = layer.backward(grad * (self._outputs[i] > 0))
            elif i + 1 in moved and i + 1 < count:
                grad = layer.call_backward(grad)  # the ReLU's gradient was applied above
            else:
                grad = layer.backward(grad)
        return grad
