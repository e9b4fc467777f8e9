"""Passes on one slice of the batch per thread (data parallelism inside a process).

``Sequential`` and a graph ``Model`` split a large enough batch into one slice per thread, for
training steps, ``evaluate`` and ``predict`` (:func:`infer`; a graph runs each slice through
its own :class:`cnnumpy.graph_run.GraphPass`). Each slice goes through its own shallow copies
of the layers (sharing their weights, with their own caches and gradients) and its own
:class:`cnnumpy.passes.Passes`, on its own thread, the kernels serially within it: one
hand-off between threads per pass instead of one or two per layer, each thread's
activations in its own cache. In training, the loss and its gradient are computed on the
whole batch between the two passes, and the slices' weight gradients are added up
afterwards, so the step is the whole batch's up to the order of float sums.

Training splits only layers whose output for one sample depends on that sample alone, with
no randomness (:data:`SPLITTABLE`): batch statistics (``BatchNormalization``) and random
masks (``Dropout``, augmentation) would differ. Inference splits any layers.

Measured (2-core machine, A/B or benchmark runs): inference at batch 256 -8.5 % for the
prototype's model, -7.7 % LeNet-like, -1 % CIFAR-like, and -39 % for the prototype's model
at 128 (its kernels ran 128 images as one chunk, on one thread); training at 256: 23.2k to
25.5k images/s for the prototype's model, 2,187 to 2,481 LeNet-like, 819 to 913 CIFAR-like.
"""

from __future__ import annotations

import copy
from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.graph import InputLayer
from cnnumpy.layers import (
    Activation,
    Add,
    Average,
    AvgPool2D,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Cropping2D,
    Dense,
    DepthwiseConv2D,
    Flatten,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    Layer,
    MaxPool2D,
    Multiply,
    ReLU,
    Reshape,
    SeparableConv2D,
    Subtract,
    UpSampling2D,
    ZeroPadding2D,
)
from cnnumpy.passes import Passes

MIN_IMAGES_PER_THREAD = 64
"""Batches with fewer images per thread run whole (each kernel then uses the threads
itself). The prototype's model, training at batch 128 (64 a thread): -26 % against the
whole batch; at 64 (32 a thread) no clear difference, nor for LeNet-like; inference at 32
(16 a thread) took twice as long split."""

SPLITTABLE = (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, Flatten, Dense,
              Activation, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, UpSampling2D,
              ZeroPadding2D, Cropping2D, Reshape, ReLU, Add, Subtract, Multiply, Average,
              Concatenate, InputLayer)
"""The layer classes (exactly these, not subclasses) that a batch may be split across: each
sample's output depends on that sample alone, with no randomness."""


class Shard:
    """One thread's slice of the batch: ``part``, and the layers' copies it runs through."""

    def __init__(self, layers: list[Layer], part: slice) -> None:
        self.part = part
        self.layers = [copy.copy(layer) for layer in layers]
        for twin in self.layers:
            twin.grads = dict(twin.grads)  # its own gradients; weights stay shared
        self.passes = Passes()


def count(layers: list[Layer], n: int, training: bool = True) -> int | None:
    """How many slices (one per thread) a batch of ``n`` samples through ``layers`` (a stack,
    or a graph model's layers) goes in, or None when it runs whole (too small, one thread,
    an unbuilt layer, or in training one that is not :data:`SPLITTABLE`)."""
    slices = min(backend.get_num_threads(), n // MIN_IMAGES_PER_THREAD)
    if slices < 2 or not backend.threads_usable():
        return None
    if not all(layer.built and (not training or type(layer) in SPLITTABLE)
               for layer in layers):
        return None
    return slices


def split(layers: list[Layer], n: int, training: bool = True) -> list[Shard] | None:
    """One :class:`Shard` per thread for a batch of ``n`` samples through the stack
    ``layers``, or None when the batch runs whole (see :func:`count`)."""
    slices = count(layers, n, training)
    if slices is None:
        return None
    return [Shard(layers, part) for part in backend.batch_slices(n, slices)]


def infer(layers: list[Layer], x: Any) -> Any:
    """The layers' inference output for the batch ``x``, one slice per thread when it is
    large enough (a first call, which builds the layers, runs whole).

    Shape:
        x: (N, *input_shape) -> (N, *output_shape).
    """
    parts = split(layers, len(x), training=False)
    if parts is None:
        return Passes().forward(layers, x, training=False)
    return forward(parts, x, logits=False, training=False)


def forward(shards: list[Shard], x: Any, logits: bool, training: bool = True) -> Any:
    """Every shard's slice of ``x`` through its layers, the outputs concatenated; the last
    layer's output before its activation when ``logits``."""

    def run(shard: Shard) -> Any:
        *body, last = shard.layers
        h = shard.passes.forward(shard.layers, x[shard.part], training, stop=len(body))
        return last.forward_logits(h, training) if logits else last.forward(h, training)

    return xp.concatenate(backend.parallel_map(run, shards))


def backward(shards: list[Shard], layers: list[Layer], grad: Any, logits: bool) -> None:
    """Back through every shard from its rows of ``grad`` (the gradient of :func:`forward`'s
    output), then each layer's weight gradients: the sum of the shards', in order."""

    def run(shard: Shard) -> None:
        *body, last = shard.layers
        for twin, layer in zip(shard.layers, layers, strict=True):
            twin.needs_input_grad = layer.needs_input_grad
        g = grad[shard.part]
        g = last.call_backward(g) if logits else last.backward(g)
        shard.passes.backward(g, stop=len(body))

    backend.parallel_map(run, shards)
    for i, layer in enumerate(layers):
        for key in layer.params:
            total = shards[0].layers[i].grads[key]
            for shard in shards[1:]:
                total = total + shard.layers[i].grads[key]
            layer.grads[key] = total
