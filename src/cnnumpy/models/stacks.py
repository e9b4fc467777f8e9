"""The small stacks: ``lenet`` and ``simple`` (the prototype notebook's model)."""

from __future__ import annotations

from cnnumpy import layers
from cnnumpy.model import Sequential


def lenet(input_shape: tuple[int, ...], num_classes: int) -> Sequential:
    """Conv 5x5x32 same, pool, conv 5x5x64 same, pool, dense 128, dense ``num_classes``."""
    return Sequential([
        layers.Conv2D(32, 5, padding="same", activation="relu", input_shape=input_shape),
        layers.MaxPool2D(2),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="lenet")


def simple(input_shape: tuple[int, ...], num_classes: int) -> Sequential:
    """The prototype notebook's model: two 3x3 convolutions with pooling, dense 128."""
    return Sequential([
        layers.Conv2D(8, 3, activation="relu", input_shape=input_shape),
        layers.MaxPool2D(2),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="simple")
