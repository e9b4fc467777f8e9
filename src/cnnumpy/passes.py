"""The forward and backward passes through a stack of layers, as ``Sequential`` runs them.

Two rewrites make them cheaper; the layers themselves are unchanged, so a layer used on its
own behaves as documented.

* A ReLU followed by max pooling is applied after the pooling instead. Both are monotone, so
  ``max(relu(z)) == relu(max(z))`` exactly, and the pooled tensor is a quarter of the size
  (for 2x2 windows), so the ReLU and its gradient cost a quarter as much. Backward, the output
  gradient is masked where the pooled output is zero and routed by the pool to the first
  maximum of ``z``: where that maximum is positive it is also the first maximum of
  ``relu(z)``, and where it is not, the gradient is zero either way. Results are bit-identical.
* An ungrouped ``Conv2D`` (no activation, or a ReLU) followed by a ``MaxPool2D`` whose windows
  tile its output is computed in one pass, the pooling done chunk by chunk while the
  convolution's output is in cache (:mod:`cnnumpy.functional.fast.conv_pool`). Values are those of
  the two layers; gradients too, up to the order in which float sums are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnumpy.backend import xp
from cnnumpy.functional.fast import conv_pool
from cnnumpy.functional.fast.fused import add_bias_relu, relu_grad_of_output
from cnnumpy.layers import Conv2D, Layer, MaxPool2D

FUSE_CONV_POOL = True
"""Compute a convolution and the max pooling after it together (see the module docstring)."""


def relu_moved_after_pool(layers: Sequence[Layer]) -> frozenset[int]:
    """Indices ``i`` of the max-pooling layers whose preceding layer's ReLU is applied after
    the pooling: ``layers[i - 1]`` has ``activation="relu"`` and ``layers[i]`` is a
    :class:`MaxPool2D` without an activation of its own."""
    return frozenset(
        i for i in range(1, len(layers))
        if isinstance(layers[i], MaxPool2D) and layers[i].activation is None
        and layers[i - 1].activation == "relu")


def conv_pool_fused(layers: Sequence[Layer]) -> frozenset[int]:
    """Indices ``i`` of the max-pooling layers computed together with the convolution
    ``layers[i - 1]``: both built, the convolution ungrouped with no activation or a ReLU,
    the pool without an activation, its windows tiling the convolution's output without
    padding (stride equal to the window). Layers are built by their first forward, so that
    one runs unfused."""
    if not FUSE_CONV_POOL:
        return frozenset()
    return frozenset(i for i in range(1, len(layers)) if _fusable(layers[i - 1], layers[i]))


def _fusable(conv: Layer, pool: Layer) -> bool:
    # exact types: a subclass may change what its forward computes
    if not (type(conv) is Conv2D and type(pool) is MaxPool2D and conv.built
            and pool.built and conv.groups == 1 and conv.activation in (None, "relu")
            and pool.activation is None and pool.strides == pool.pool_size):
        return False
    h, w, _ = conv.compute_output_shape(conv.input_shape)
    # "same" pooling pads nothing when the windows tile the input
    return pool.padding == "valid" or (h % pool.pool_size[0] == 0 and w % pool.pool_size[1] == 0)


class Passes:
    """Forward and backward through a list of layers, with the rewrites above.

    ``backward`` goes back through the layers of the last ``forward`` call, with the same
    rewrites, so the two always agree.
    """

    def __init__(self) -> None:
        self._layers: list[Layer] = []
        self._moved: frozenset[int] = frozenset()
        self._outputs: dict[int, Any] = {}  # pooled-then-ReLU outputs, for the backward masks
        self._fused: dict[int, conv_pool.ConvPoolCache] = {}  # by the pool's index

    def forward(self, layers: list[Layer], x: Any, training: bool,
                stop: int | None = None) -> Any:
        """Run ``layers[:stop]`` on the batch ``x`` and return the last output."""
        self._layers, self._moved, self._outputs = layers, relu_moved_after_pool(layers), {}
        self._fused = {}
        count = len(layers) if stop is None else stop
        fused = conv_pool_fused(layers[:count])
        for i, layer in enumerate(layers[:count]):
            if i in self._fused:
                pass  # computed with the convolution before it
            elif i + 1 in fused and len(x):
                x = self._conv_pool_forward(layer, layers[i + 1], x, training, i + 1)
            elif i + 1 in self._moved and i + 1 < count:
                x = layer.forward_logits(x, training)  # its ReLU comes after the pool
            else:
                x = layer.forward(x, training)
            if i in self._moved:
                add_bias_relu(x, None, True)  # in place: the pass's own output
                if training:
                    self._outputs[i] = x
        return x

    def _conv_pool_forward(self, conv: Conv2D, pool: MaxPool2D, x: Any, training: bool,
                           index: int) -> Any:
        x = conv._check_input(x)
        y, self._fused[index] = conv_pool.conv2d_maxpool_forward(
            x, conv.params["kernel"], conv.params.get("bias"), conv.strides, conv._padding,
            conv.dilation_rate, pool.pool_size, training)
        return y

    def backward(self, grad: Any, stop: int | None = None) -> Any:
        """Back through the last forward's ``layers[:stop]`` from the gradient of their last
        output; returns the input gradient (None once no earlier layer has weights, as layers
        skip it)."""
        layers, moved = self._layers, self._moved
        count = len(layers) if stop is None else stop
        i = count - 1
        while i >= 0 and grad is not None:
            layer = layers[i]
            if i in moved:
                if i not in self._outputs:
                    raise ValueError(f"{layer.label}: backward called before a training forward")
                grad = relu_grad_of_output(grad, self._outputs[i])
            if i in self._fused:
                grad = self._conv_pool_backward(layers[i - 1], layer, grad, self._fused[i])
                i -= 2
                continue
            if i + 1 in moved and i + 1 < count:
                grad = layer.call_backward(grad)  # its ReLU's gradient was applied above
            else:
                grad = layer.backward(grad)
            i -= 1
        return grad

    @staticmethod
    def _conv_pool_backward(conv: Conv2D, pool: MaxPool2D, grad: Any,
                            cache: conv_pool.ConvPoolCache) -> Any:
        if cache.first is None:
            raise ValueError(f"{pool.label}: backward called before a training forward")
        dx, conv.grads["kernel"], dbias = conv_pool.conv2d_maxpool_backward(
            xp.asarray(grad, dtype=conv.dtype), cache, need_dx=conv.needs_input_grad)
        if conv.use_bias:
            conv.grads["bias"] = dbias
        return dx
