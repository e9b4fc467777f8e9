"""Layers: parameter handling around the kernels of :mod:`cnnumpy.functional`.

``LAYERS`` is the one explicit table from class names to classes that model files and
configs may name; nothing else is ever looked up.
"""

from __future__ import annotations

from typing import Any

from cnnumpy.layers.activation import ReLU
from cnnumpy.layers.base import Layer
from cnnumpy.layers.conv import Conv2D
from cnnumpy.layers.conv_depthwise import DepthwiseConv2D, SeparableConv2D
from cnnumpy.layers.conv_transpose import Conv2DTranspose
from cnnumpy.layers.core import Activation, Dense, Dropout, Flatten
from cnnumpy.layers.erasing import RandomErasing
from cnnumpy.layers.merge import Add, Average, Concatenate, Multiply, Subtract
from cnnumpy.layers.normalization import BatchNormalization
from cnnumpy.layers.pooling import (
    AveragePooling2D,
    AvgPool2D,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    GlobalMaxPooling2D,
    MaxPool2D,
    MaxPooling2D,
)
from cnnumpy.layers.preprocessing import (
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
)
from cnnumpy.layers.reshaping import Cropping2D, Reshape, UpSampling2D, ZeroPadding2D

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, Flatten, Dense,
                Activation, Dropout, BatchNormalization, RandomFlip, RandomTranslation, RandomCrop,
                RandomRotation, RandomContrast, RandomErasing, DepthwiseConv2D, SeparableConv2D,
                Conv2DTranspose)
}
LAYERS.update({cls.__name__: cls for cls in (ReLU, UpSampling2D, ZeroPadding2D, Cropping2D,
                                             Reshape)})


def layer_from_config(item: Any) -> Layer:
    """Rebuild a layer from ``{"class_name": ..., "config": {...}}`` using only ``LAYERS``.

    Raises:
        ValueError: the item is malformed, names an unknown layer, or has bad arguments.
    """
    if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
        raise ValueError(f"layer config must be {{'class_name': str, 'config': dict}}, "
                         f"received {item!r}")
    name = item.get("class_name")
    if name not in LAYERS:
        raise ValueError(f"unknown layer class {name!r}; expected one of {sorted(LAYERS)}")
    try:
        return LAYERS[name].from_config(item["config"])
    except TypeError as exc:
        raise ValueError(f"{name}: bad config {item['config']!r}: {exc}") from None


__all__ = [
    "Layer", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Flatten", "Dense", "Activation", "Dropout", "BatchNormalization", "LAYERS",
    "RandomFlip", "RandomTranslation", "RandomCrop", "RandomRotation", "RandomContrast",
    "RandomErasing",
    "layer_from_config", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
    "ReLU", "UpSampling2D", "ZeroPadding2D", "Cropping2D", "Reshape",
    "Add", "Subtract", "Multiply", "Average", "Concatenate",
]
