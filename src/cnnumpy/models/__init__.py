"""Ready-made architectures: stacks (``Sequential``) and graphs (``Model``).

One file per family: :mod:`~cnnumpy.models.stacks` (``lenet``, ``simple``),
:mod:`~cnnumpy.models.vgg` (``vgg_small``), :mod:`~cnnumpy.models.resnet` (``resnet``,
``resnet18``), :mod:`~cnnumpy.models.mobilenet` (``mobilenet_v2``) and
:mod:`~cnnumpy.models.unet` (``unet``); :mod:`~cnnumpy.models.augment` puts random flips and
shifts in front of any of them. ``MODELS`` maps the CLI's ``--model`` names to builders taking
``(input_shape, num_classes)``; ``TRAINING_DEFAULTS`` holds their recipes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from cnnumpy.graph_io import is_graph_config
from cnnumpy.graph_model import Model
from cnnumpy.model import Sequential
from cnnumpy.models.augment import flips_horizontally, predict_mirrored, with_augmentation
from cnnumpy.models.mobilenet import mobilenet_v2, mobilenet_v2_small
from cnnumpy.models.resnet import resnet, resnet18, resnet20
from cnnumpy.models.stacks import lenet, simple
from cnnumpy.models.unet import unet
from cnnumpy.models.vgg import vgg_small

__all__ = ["ADAM_LR", "MODELS", "TRAINING_DEFAULTS", "flips_horizontally", "get", "lenet",
           "mobilenet_v2", "mobilenet_v2_small", "predict_mirrored", "resnet", "resnet18",
           "resnet20", "simple", "training_defaults", "unet", "vgg_small", "with_augmentation"]


MODELS: dict[str, Callable[[tuple[int, ...], int], Sequential | Model]] = {
    "lenet": lenet, "simple": simple, "vgg-small": vgg_small, "resnet20": resnet20,
    "mobilenet-v2-small": mobilenet_v2_small}


TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet": {"epochs": 6, "batch_size": 64, "val_split": 0.0, "augment": True},
    "vgg-small": {"epochs": 22, "batch_size": 64, "val_split": 0.1, "augment": True},
    "resnet20": {"epochs": 10, "batch_size": 128, "val_split": 0.1, "augment": True,
                 "shift": 0.05, "optimizer": "sgd", "lr": 0.1,
                 "optimizer_args": {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                 "label_smoothing": 0.1, "tta": True},
    "mobilenet-v2-small": {"epochs": 3, "batch_size": 64, "val_split": 0.0, "augment": False},
}
"""The CLI's defaults per model: the recipe each one was tuned with, all with cosine decay
from ``lr`` and Adam unless ``optimizer`` says (``optimizer_args``: its momentum and weight
decay; the CLI applies a recipe's ``lr`` and ``optimizer_args`` to the recipe's own optimizer
only), ``label_smoothing`` for the loss and, where ``tta`` is set, test-time flips for a model
trained with flips.
vgg-small's and resnet20's were chosen on the last 10% of Fashion-MNIST's training images left
after the held-out test set. resnet20 (with ``--augment shift,flip``; 10 epochs at batch 128
fit in 15 minutes on 2 cores with a margin), validation accuracy after 10 epochs (with flips at
test time), measured on one machine (AMD EPYC, 2026-12-06): SGD with Nesterov momentum 0.9 from
0.1, weight decay 5e-4 and label smoothing 0.1: 94.06% (94.30%); with label smoothing 0.2
93.98% (94.06%), from 0.2 93.96% (94.08%), with weight decay 1e-3 93.58% (93.92%) and
2.5e-4 93.22% (93.72%), without label smoothing 93.68% (93.82%); Adam from 4e-3, the
previous recipe, 93.26% (93.72%), with label smoothing 0.1 93.54% (93.68%); a second seed:
SGD with smoothing 93.42% (93.78%), Adam 93.54% (93.74%); SGD with smoothing for 12 epochs
(seeds 0 and 1, once the steps were faster) 93.86% (94.08%) and 93.64% (94.14%), no better than
10; random erasing added (``--augment shift,flip,erase``, seeds 0 and 1): 93.74% (94.08%) and
93.80% (94.26%) after 10 epochs, 93.68% (93.98%) and 94.08% (94.20%) after 12, no better.
Shifts of up to 5% (``shift``: one pixel either way) instead of 10% (two), 2026-12-07, seeds
0, 1 and 2: 94.38% (94.54%), 93.82% (94.28%), 94.02% (94.22%), a mean of 94.07% (94.35%);
10% on the same seeds 94.06% (94.30%), 93.42% (93.78%) (both 2026-12-06) and 94.02% (94.04%),
a mean of 93.83% (94.04%); no shifts (seed 0) 93.50% (94.08%).
Earlier, on an
Intel Xeon, with Adam: 93.46% after 10 epochs at 4e-3 (93.64%), 93.44% after 11 (93.78%);
after 9, 93.22% at 4e-3, 93.14% at 2e-3 and 93.00% with flips alone (2e-3); at batch 256 and
4e-3, 93.48% after 11 epochs, which do not fit.
lenet's shifts were chosen on the last 10% of the bundled digits' training images: validation
accuracy 98.25-98.75% with them, against 97.25-98.25% without (seeds 0-3). mobilenet-v2-small
is untuned, measured on the bundled digits only: 95.9% in 3 epochs (seed 0)."""

ADAM_LR = 2e-3
"""The starting learning rate of Adam and AdamW under the cosine schedule, unless a recipe
(``lr``) or ``--lr`` gives another."""


def training_defaults(name: str) -> dict[str, Any]:
    """``epochs``, ``batch_size``, ``val_split``, ``augment`` (and, for some, Adam's ``lr``)
    for a model name; a model without a recipe (``simple``, a JSON config) gets lenet's,
    without augmentation, so that its layers stay exactly the ones asked for."""
    if name in TRAINING_DEFAULTS:
        return dict(TRAINING_DEFAULTS[name])
    return {**TRAINING_DEFAULTS["lenet"], "augment": False}


def get(name: str, input_shape: tuple[int, ...], num_classes: int) -> Sequential | Model:
    """A model by name, or from a JSON file holding a ``get_config()`` of a ``Sequential`` or
    of a graph ``Model`` (whose input shape must be the data's).

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
    model: Sequential | Model
    if is_graph_config(config):
        try:
            model = Model.from_config(config)
        except (TypeError, AttributeError, OverflowError) as exc:
            raise ValueError(f"model config {name!r}: {exc}") from None
        if model.input_shape != tuple(input_shape):
            raise ValueError(f"model config {name!r} takes inputs of shape "
                             f"{model.input_shape}, but the data's are {tuple(input_shape)}")
    else:
        model = Sequential.from_config(config)
        model.build(tuple(input_shape))
    if model.output_shape != (num_classes,):
        raise ValueError(f"model config {name!r} outputs {model.output_shape}, but the data "
                         f"has {num_classes} classes")
    return model
