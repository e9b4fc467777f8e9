"""ONNX converters of the reshaping layers and ReLU, for :mod:`cnnumpy.onnx` (its ``_Graph``
and conventions: images may stand NHWC or NCHW, ``g.spatial_axes()`` says where), and of
RandomCrop at inference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy import layers


def _upsampling(g: Any, layer: layers.UpSampling2D, shape: tuple[int, ...]) -> None:
    g.to_layout("NCHW", layer.name)
    scales = g.const(f"{layer.name}/scales", [1, 1, *layer.size])
    if layer.interpolation == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}
    g.apply("Resize", layer.name, "", scales, **attrs)


def _zero_padding(g: Any, layer: layers.ZeroPadding2D, shape: tuple[int, ...]) -> None:
    (top, bottom), (left, right) = layer.padding
    pads = np.zeros((2, g.rank), dtype=np.int64)
    pads[:, list(g.spatial_axes())] = [[top, left], [bottom, right]]
    g.apply("Pad", layer.name, g.const(f"{layer.name}/pads", pads.ravel(), np.int64))


def _cropping(g: Any, layer: layers.Cropping2D, shape: tuple[int, ...]) -> None:
    (top, bottom), (left, right) = layer.cropping
    bounds = {"starts": [top, left], "ends": [shape[0] - bottom, shape[1] - right],
              "axes": list(g.spatial_axes())}
    g.apply("Slice", layer.name, *(g.const(f"{layer.name}/{key}", value, np.int64)
                                   for key, value in bounds.items()))


def _reshape(g: Any, layer: layers.Reshape, shape: tuple[int, ...]) -> None:
    g.to_layout("NHWC", layer.name)  # cnnumpy's row-major order of each sample
    target = g.const(f"{layer.name}/shape", [0, *layer.compute_output_shape(shape)], np.int64)
    g.apply("Reshape", layer.name, target)  # 0: the batch size, copied from the input


def _relu(g: Any, layer: layers.ReLU, shape: tuple[int, ...]) -> None:
    base, slope, threshold = layer.name, layer.negative_slope, layer.threshold
    if threshold == 0 and slope == 0:
        if layer.max_value is None:
            g.apply("Relu", base)
        else:
            g.apply("Clip", base, g.const(f"{base}/min", 0.0), g.const(f"{base}/max",
                                                                       layer.max_value))
        return
    if threshold == 0 and layer.max_value is None:
        g.apply("LeakyRelu", base, alpha=slope)
        return
    x, t = g.x, g.const(f"{base}/threshold", threshold)
    above = x if layer.max_value is None else g.op(
        "Min", [x, g.const(f"{base}/max_value", layer.max_value)], base)
    below = g.op("Mul", [g.op("Sub", [x, t], base), g.const(f"{base}/slope", slope)], base)
    g.x = g.op("Where", [g.op("Greater", [x, t], base), above, below], base)


def random_crop(g: Any, layer: layers.RandomCrop, shape: tuple[int, ...]) -> None:
    """Identity, or (when the crop size differs from the image) the center window that the
    layer cuts at inference: Pad, then Slice."""
    h, w = shape[:2]
    if (layer.height, layer.width) == (h, w):
        g.apply("Identity", layer.name)
        return
    # At inference the layer cuts the center window of the image padded by ``padding``.
    top = (h + 2 * layer.padding - layer.height) // 2 - layer.padding
    left = (w + 2 * layer.padding - layer.width) // 2 - layer.padding
    before = [max(-top, 0), max(-left, 0)]
    after = [max(top + layer.height - h, 0), max(left + layer.width - w, 0)]
    axes = g.spatial_axes()
    if any(before + after):
        pads = np.zeros((2, g.rank), dtype=np.int64)
        pads[0, list(axes)], pads[1, list(axes)] = before, after
        g.apply("Pad", layer.name, g.const(f"{layer.name}/pads", pads.ravel(), np.int64))
    starts = [max(top, 0), max(left, 0)]
    ends = [starts[0] + layer.height, starts[1] + layer.width]
    g.apply("Slice", layer.name, *(g.const(f"{layer.name}/{key}", value, np.int64)
                                   for key, value in (("starts", starts), ("ends", ends),
                                                      ("axes", list(axes)))))


CONVERTERS: dict[type, Callable[[Any, Any, tuple[int, ...]], None]] = {
    layers.UpSampling2D: _upsampling, layers.ZeroPadding2D: _zero_padding,
    layers.Cropping2D: _cropping, layers.Reshape: _reshape, layers.ReLU: _relu,
}
