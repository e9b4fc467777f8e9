"""Every layer's output for one image: what ``cnnumpy visualize`` draws and ``cnnumpy serve``
shows, computed once here for both.

A model is taken as its list of layers, each fed the previous one's output (a
``Sequential``). A graph model can plug in by giving the same list in the order its layers
run, with each layer's input looked up by name instead of taken from the previous entry.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class LayerOutput(NamedTuple):
    """One layer's place in a forward pass of one image.

    Shape:
        ``input`` and ``output``: the layer's per-sample shapes (no batch axis).
    """

    index: int
    layer: Any
    input: np.ndarray
    output: np.ndarray


def layer_outputs(model: Any, image: np.ndarray) -> list[LayerOutput]:
    """Run ``image`` through ``model``'s layers in inference mode, keeping each layer's input
    and output.

    Shape:
        image: ``(H, W, C)``, the model's input shape.
    """
    layers = list(model.layers)
    if not layers:
        raise ValueError("layer_outputs: the model has no layers")
    x = np.asarray(image)[np.newaxis].astype(layers[0].dtype)
    trace = []
    for index, layer in enumerate(layers):
        y = layer.forward(x, training=False)
        trace.append(LayerOutput(index, layer, x[0], np.asarray(y)[0]))
        x = y
    return trace
