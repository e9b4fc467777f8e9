"""Ready-made architectures, by name: ``lenet``, ``simple`` and ``vgg-small``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

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


def with_augmentation(model: Sequential, flip: bool = True, shift: bool = True) -> Sequential:
    """The same model behind random whole-pixel shifts of up to 10% of the image's height and
    width and, with ``flip``, random left-right flips, all active only while training.

    Args:
        model: the model to augment; its input shape is taken from its first layer.
        flip: add ``RandomFlip("horizontal")``: right for mirror-symmetric classes such as
            clothing, wrong for digits.
        shift: add the shifts, ``RandomTranslation(0.1, 0.1)``.

    Returns:
        A new ``Sequential`` with the augmentation layers in front of the model's layers.
    """
    shape = model.layers[0].input_shape
    flips = [layers.RandomFlip("horizontal", input_shape=shape)] if flip else []
    shifts = [layers.RandomTranslation(0.1, 0.1, input_shape=None if flip else shape)]
    return Sequential([*flips, *(shifts if shift else []), *model.layers], name=model.name)


MODELS: dict[str, Callable[[tuple[int, ...], int], Sequential]] = {
    "lenet": lenet, "simple": simple, "vgg-small": vgg_small}


TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet": {"epochs": 6, "batch_size": 64, "val_split": 0.0, "augment": True},
    "vgg-small": {"epochs": 22, "batch_size": 64, "val_split": 0.1, "augment": True},
}
"""The CLI's defaults per model: the recipe each one was tuned with, all with the default
Adam at 2e-3 and cosine decay. vgg-small's was chosen on the last 10% of Fashion-MNIST's
training images left after the held-out test set. lenet's shifts were chosen on the last 10%
of the bundled digits' training images: validation accuracy 98.25-98.75% with them, against
97.25-98.25% without (seeds 0-3)."""


def training_defaults(name: str) -> dict[str, Any]:
    """``epochs``, ``batch_size``, ``val_split`` and ``augment`` for a model name; a model
    without a recipe (``simple``, a JSON config) gets lenet's, without augmentation, so that
    its layers stay exactly the ones asked for."""
    if name in TRAINING_DEFAULTS:
        return dict(TRAINING_DEFAULTS[name])
    return {**TRAINING_DEFAULTS["lenet"], "augment": False}


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
