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
  the two layers; gradients too, up to the order in which float sums are added. Not where the
  convolution has :data:`UNFUSED_FROM` channels in and out and the compiled F(4x4, 3x3)
  kernels compute it (the fused path's F(2x2, 3x3) takes twice its products): CIFAR-like
  training 1.30-1.35x at batch 32 and 64, 1.23x at 256.
* Training, a ``BatchNormalization`` followed by a ReLU (``Activation("relu")``, or ``ReLU``
  with a ``max_value`` at most) computes both in one pass
  (:meth:`~cnnumpy.layers.BatchNormalization.forward_relu`), and its backward goes back
  through both; equal within float rounding.
* At inference, when asked (``fold=True``: a graph model's ``predict``), a ``Conv2D`` or
  ``DepthwiseConv2D`` without activation followed by ``BatchNormalization`` runs as one
  convolution with BN folded into its kernel and bias
  (:func:`cnnumpy.functional.fast.batch_norm.fold_into_kernel`); equal within float rounding.
  A ReLU after that batch norm (as in the training rewrite) is then applied in place to the
  convolution's output.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

from cnnumpy.backend import xp
from cnnumpy.functional.fast import batch_norm, compiled, conv_pool, winograd_conv
from cnnumpy.functional.fast.fused import add_bias_relu, relu_grad_of_output
from cnnumpy.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    DepthwiseConv2D,
    Layer,
    MaxPool2D,
    ReLU,
)

FUSE_CONV_POOL = True
"""Compute a convolution and the max pooling after it together (see the module docstring)."""
UNFUSED_FROM = 32
"""From this many channels in and out, a convolution that Winograd's F(4x4, 3x3) computes
(:func:`cnnumpy.functional.fast.winograd_conv.applies`) with the compiled kernels runs on its
own, then its pooling: its transformed arrays and products are about half the fused F(2x2,
3x3) path's. Without them (NumPy's F(4x4) transforms) it stays fused: unfused, CIFAR-like
trained at 0.64x and inferred at 0.54x."""
FUSE_BN_RELU = True
"""Compute a training BatchNormalization and the ReLU after it in one pass."""
FOLD_BN = True
"""Fold BatchNormalization into the convolution before it where ``forward(fold=True)``."""


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
    kernel = conv.params["kernel"]  # (kh, kw, C, F)
    if (min(kernel.shape[2:]) >= UNFUSED_FROM and pool.pool_size == (2, 2)
            and compiled.usable(kernel)
            and winograd_conv.applies(kernel.shape, conv.strides, conv.dilation_rate, 1)):
        return False
    h, w, _ = conv.compute_output_shape(conv.input_shape)
    # "same" pooling pads nothing when the windows tile the input
    return pool.padding == "valid" or (h % pool.pool_size[0] == 0 and w % pool.pool_size[1] == 0)


def relu_clip(layer: Layer) -> tuple[bool, float | None]:
    """``(True, top)`` when ``layer`` is exactly ``min(max(x, 0), top)`` (``top`` None: no
    clip), else ``(False, None)``."""
    if type(layer) is Activation and layer.activation == "relu":
        return True, None
    if type(layer) is ReLU and layer.negative_slope == 0 and layer.threshold == 0:
        return True, layer.max_value
    return False, None


def _foldable(conv: Layer, bn: BatchNormalization) -> bool:
    return (type(conv) in (Conv2D, DepthwiseConv2D) and conv.built and bn.built
            and conv.activation is None)


def _folded(conv: Layer, bn: BatchNormalization) -> Layer:
    """A shallow copy of ``conv`` whose kernel and bias include ``bn`` at inference."""
    twin = copy.copy(conv)
    twin.params = dict(zip(("kernel", "bias"), batch_norm.fold_into_kernel(
        conv.params["kernel"], conv.params.get("bias"), bn.params["gamma"], bn.params["beta"],
        bn.state["moving_mean"], bn.state["moving_variance"], bn.epsilon), strict=True))
    return twin


def _relu_in_place(x: Any, top: float | None) -> None:
    """``x = min(max(x, 0), top)`` in place (no clip where ``top`` is None)."""
    if top is None:
        add_bias_relu(x, None, True)
    else:
        xp.clip(x, x.dtype.type(0), x.dtype.type(top), out=x)


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
        self._done: dict[int, str] = {}  # by index: computed with the layer before it

    def forward(self, layers: list[Layer], x: Any, training: bool,
                stop: int | None = None, fold: bool = False) -> Any:
        """Run ``layers[:stop]`` on the batch ``x`` and return the last output; ``fold``:
        fold batch norms into convolutions at inference (no backward after such a pass)."""
        self._layers, self._moved, self._outputs = layers, relu_moved_after_pool(layers), {}
        self._fused, self._done = {}, {}  # _done: index -> how it ran with the layer before
        count = len(layers) if stop is None else stop
        fused = conv_pool_fused(layers[:count])
        for i, layer in enumerate(layers[:count]):
            after = layers[i + 1] if i + 1 < count else None
            relu, top = relu_clip(after) if after is not None else (False, None)
            if i in self._fused or i in self._done:
                pass  # computed with the layer before it
            elif (fold and FOLD_BN and not training and after is not None and len(x)
                  and type(after) is BatchNormalization and _foldable(layer, after)):
                x = _folded(layer, after).forward(x, training)
                self._done[i + 1] = "folded"
                then = layers[i + 2] if i + 2 < count else None
                relu, top = relu_clip(then) if then is not None and then.built \
                    and then.dtype == x.dtype else (False, None)
                if relu:  # the ReLU after the batch norm, in place on the convolution's output
                    _relu_in_place(x, top)
                    self._done[i + 2] = "folded"
            elif (FUSE_BN_RELU and training and relu and type(layer) is BatchNormalization
                  and i + 2 not in self._moved):
                x = layer.forward_relu(x, training, top)
                self._done[i + 1] = "bn_relu"
            elif i + 1 in fused and len(x):  # a Conv2D and a MaxPool2D (conv_pool_fused)
                x = self._conv_pool_forward(cast(Conv2D, layer), cast(MaxPool2D, layers[i + 1]),
                                            x, training, i + 1)
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

    def release(self) -> None:
        """Drop what the last forward kept for its backward (the layers keep their own
        caches: :meth:`Layer.release`)."""
        self._outputs, self._fused = {}, {}

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
                grad = self._conv_pool_backward(  # a Conv2D and a MaxPool2D (conv_pool_fused)
                    cast(Conv2D, layers[i - 1]), cast(MaxPool2D, layer), grad, self._fused[i])
                i -= 2
                continue
            if self._done.get(i) == "folded":
                raise ValueError(f"{layer.label}: backward after an inference pass that folded "
                                 "it into the convolution before it")
            if self._done.get(i) == "bn_relu":
                i -= 1  # the batch norm before it goes back through both
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
