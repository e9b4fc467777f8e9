"""``vgg-small``: a small VGG of 3x3 convolutions with batch norm."""

from __future__ import annotations

from typing import Any

from cnnumpy import layers
from cnnumpy.model import Sequential


def _conv_bn_relu(filters: int, **kwargs: Any) -> list[layers.Layer]:
    return [layers.Conv2D(filters, 3, padding="same", use_bias=False, **kwargs),
            layers.BatchNormalization(momentum=0.9), layers.Activation("relu")]


def vgg_small(input_shape: tuple[int, ...], num_classes: int) -> Sequential:
    """A small VGG: 3x3 convolutions with batch norm, most of the work after the first pooling.

    One cheap 16-filter convolution at full resolution (pooled before its batch norm, so the
    normalization runs on a quarter of the pixels), two 64-filter convolutions at half
    resolution, one 128-filter convolution at a quarter, then light dropout around a dense
    layer of 256. About 12.6 M multiply-adds per 28x28 image, a third of them in the second
    64-filter convolution; the previous two-block, 32-filter version took 18 M and trained at
    half the speed. Recipe: ``TRAINING_DEFAULTS["vgg-small"]`` (augmentation included).
    """
    return Sequential([
        layers.Conv2D(16, 3, padding="same", use_bias=False, input_shape=input_shape),
        layers.MaxPool2D(2), layers.BatchNormalization(momentum=0.9), layers.Activation("relu"),
        *_conv_bn_relu(64), *_conv_bn_relu(64), layers.MaxPool2D(2),
        *_conv_bn_relu(128), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dropout(0.1),
        layers.Dense(256, activation="relu"), layers.Dropout(0.25),
        layers.Dense(num_classes, activation="softmax"),
    ], name="vgg_small")
