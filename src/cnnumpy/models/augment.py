"""``with_augmentation``: random flips, shifts and erasing in front of a stack or a graph; and
``predict_mirrored``, its test-time counterpart for a model trained with flips."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import layers
from cnnumpy.graph import Input
from cnnumpy.graph_model import Model
from cnnumpy.layers.merge import Merge
from cnnumpy.model import Sequential


def with_augmentation(model: Any, flip: bool = True, shift: bool | float = True,
                      erase: bool = False) -> Any:
    """The same model behind random whole-pixel shifts of up to 10% of the image's height and
    width (or ``shift``'s share) and, with ``flip``, random left-right flips, with ``erase``
    random erasing, all active only while training.

    Args:
        model: the ``Sequential`` (its input shape taken from its first layer) or graph
            ``Model`` to augment.
        flip: add ``RandomFlip("horizontal")``: right for mirror-symmetric classes such as
            clothing, wrong for digits.
        shift: add the shifts: True for ``RandomTranslation(0.1, 0.1)``, a float ``f`` in
            (0, 1) for ``RandomTranslation(f, f)`` (0.05: one pixel either way on 28x28).
            False or 0: none.
        erase: add ``RandomErasing(0.5)`` last: half the images get a box of noise in [0, 1]
            over 2-33% of their area.

    Returns:
        A new model of the same kind with the augmentation layers in front of the model's
        layers (the same layer objects, weights shared); a graph's input keeps its name.
    """
    if not isinstance(shift, bool) and not (isinstance(shift, (int, float)) and 0 <= shift < 1):
        raise ValueError(f"with_augmentation: shift must be True, False or a share of the "
                         f"image in [0, 1), received shift={shift!r}")
    if isinstance(model, Model):
        return _augmented_graph(model, _front(flip, shift, erase))
    front = _front(flip, shift, erase, model.layers[0].input_shape)
    return Sequential([*front, *model.layers], name=model.name)


def _front(flip: bool, shift: bool | float, erase: bool, shape: Any = None
           ) -> list[layers.Layer]:
    """The augmentation layers, in order; the first one takes ``shape`` as its input's."""
    share = 0.1 if shift is True else float(shift)
    chosen = [(kind, args) for on, kind, args in (
        (flip, layers.RandomFlip, ("horizontal",)),
        (shift, layers.RandomTranslation, (share, share)),
        (erase, layers.RandomErasing, (0.5,))) if on]
    return [kind(*args, input_shape=shape if i == 0 else None)
            for i, (kind, args) in enumerate(chosen)]


def _augmented_graph(model: Model, front: list[layers.Layer]) -> Model:
    """``model``'s nodes replayed, in their order, on an input behind the augmentation."""
    inputs = Input(model.input_shape, dtype=model.input.dtype.name, name=model.input.layer.name)
    x = inputs
    for layer in front:
        x = layer(x)
    tensors = {id(model.input): x}
    for node in model._nodes:
        if node.inputs:
            args = [tensors[id(t)] for t in node.inputs]
            tensors[id(node.output)] = node.layer(args if isinstance(node.layer, Merge)
                                                  else args[0])
    return Model(inputs, tensors[id(model.output)], name=model.name)


def flips_horizontally(model: Any) -> bool:
    """Whether ``model`` mirrors its training images left to right (a ``RandomFlip`` layer
    whose mode includes ``"horizontal"``, as :func:`with_augmentation` adds with ``flip``)."""
    return any(isinstance(layer, layers.RandomFlip) and "horizontal" in layer.mode
               for layer in model.layers)


def predict_mirrored(model: Any, x: Any, batch_size: int = 256) -> Any:
    """The mean of ``model.predict`` for the images ``x`` and for the same images mirrored left
    to right: test-time augmentation for a model trained with random flips.

    Averaging each image's two views is right where a class looks the same mirrored (the
    model learnt that from its flipped training images) and wrong for digits. ResNet-20 on
    Fashion-MNIST (9 epochs, shifts and flips), validation accuracy: 93.22 -> 93.64% and
    93.48 -> 93.78% in two runs.

    Args:
        model: a built model.
        x: images, NHWC.
        batch_size: images per forward pass.

    Shape:
        x: (N, H, W, C); returns the shape ``model.predict(x)`` returns.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"predict_mirrored: x must be images (N, H, W, C), received shape "
                         f"{x.shape}")
    plain = model.predict(x, batch_size=batch_size)
    return (plain + model.predict(x[:, :, ::-1], batch_size=batch_size)) / 2
