"""Ready-made architectures, by name: ``lenet``, ``simple`` and ``vgg-small``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

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


def _conv_bn_relu(filters: int, **kwargs) -> list[layers.Layer]:
    return [layers.Conv2D(filters, 3, padding="same", use_bias=False, **kwargs),
            layers.BatchNormalization(), layers.Activation("relu")]


def vgg_small(input_shape: tuple[int, ...], num_classes: int) -> Sequential:
    """Two VGG blocks (3x3 convolutions with batch norm, 32 then 64 filters), dropout, dense."""
    return Sequential([
        *_conv_bn_relu(32, input_shape=input_shape), *_conv_bn_relu(32),
        layers.MaxPool2D(2), layers.Dropout(0.2),
        *_conv_bn_relu(64), *_conv_bn_relu(64),
        layers.MaxPool2D(2), layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(num_classes, activation="softmax"),
    ], name="vgg_small")


def with_augmentation(model: Sequential) -> Sequential:
    """The same model behind random shifts (up to 10%) and rotations (up to about 11 degrees),
    active only while training; the input shape is taken from the model's first layer."""
    shape = model.layers[0].input_shape
    return Sequential([layers.RandomTranslation(0.1, 0.1, input_shape=shape),
                       layers.RandomRotation(0.03), *model.layers], name=model.name)


MODELS: dict[str, Callable[[tuple[int, ...], int], Sequential]] = {
    "lenet": lenet, "simple": simple, "vgg-small": vgg_small}


def get(name: str, input_shape: tuple[int, ...], num_classes: int) -> Sequential:
    """A model by name, or from a JSON file holding a ``Sequential.get_config()``.

    Raises:
        ValueError: unknown name, unreadable JSON, or a config whose shapes do not fit.
    """
    if name in MODELS:
        return MODELS[name](tuple(input_shape), num_classes)
    if not name.endswith(".json"):
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)} or a "
                         ".json file holding a model config")
    if not os.path.isfile(name):
        raise ValueError(f"model config {name!r} not found")
    with open(name, encoding="utf-8") as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config {name!r} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model config {name!r} must be a JSON object")
    model = Sequential.from_config(config)
    model.build(tuple(input_shape))
    if model.output_shape != (num_classes,):
        raise ValueError(f"model config {name!r} outputs {model.output_shape}, but the data "
                         f"has {num_classes} classes")
    return model
