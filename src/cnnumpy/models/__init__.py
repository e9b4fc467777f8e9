"""Ready-made architectures, by name: ``lenet``, ``simple`` and ``vgg-small``.

One file per family: :mod:`~cnnumpy.models.stacks` (``lenet``, ``simple``),
:mod:`~cnnumpy.models.vgg`. ``MODELS`` maps the CLI's ``--model`` names to builders taking
``(input_shape, num_classes)``; ``TRAINING_DEFAULTS`` holds their recipes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from cnnumpy import layers
from cnnumpy.model import Sequential
from cnnumpy.models.resnet import resnet, resnet18
from cnnumpy.models.stacks import lenet, simple
from cnnumpy.models.vgg import vgg_small

__all__ = ["MODELS", "TRAINING_DEFAULTS", "get", "lenet", "resnet", "resnet18", "simple",
           "training_defaults", "vgg_small", "with_augmentation"]


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
