"""How one output value of a layer was made, in the prototype notebook's terms, from the
layer's own arrays: for a convolution the input window, the kernel, their element-wise
products, the sum plus the bias and the activation (a depthwise convolution's window is its
one input channel); for pooling the window and the value that won (max) or their mean
(average). In a graph model the layer's input is its node's actual input.

Each explanation also carries ``model_value``, the output the model itself computed at that
position, so that a reader (and the tests) can check the arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.feature_maps import LayerOutput
from cnnumpy.functional import activations
from cnnumpy.functional.im2col import resolve_padding
from cnnumpy.functional.pooling import pool_padding
from cnnumpy.layers import AvgPool2D, Conv2D, DepthwiseConv2D, MaxPool2D


def explainable(layer: Any) -> bool:
    """Whether :func:`explain` can show how ``layer``'s outputs were made."""
    return (type(layer) in (Conv2D, DepthwiseConv2D)
            or isinstance(layer, (MaxPool2D, AvgPool2D))) \
        and len(layer.input_shape or ()) == 3


def _rows_cols(start: int, size: int, step: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The input indices a window starting at ``start`` reads, and which fall inside
    ``[0, limit)`` (the rest are padding)."""
    idx = start + step * np.arange(size)
    return idx, (idx >= 0) & (idx < limit)


def _window(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: float) -> tuple[
        np.ndarray, np.ndarray]:
    """``x[rows][:, cols]`` with ``fill`` where an index is outside ``x`` (padding), and the
    mask of the cells inside.

    Shape:
        x: ``(H, W, C)``; returns ``(len(rows), len(cols), C)`` and ``(len(rows), len(cols))``.
    """
    h, w = x.shape[:2]
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    window = np.full((len(rows), len(cols), x.shape[2]), fill, dtype=np.float64)
    r, c = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    window[inside] = x[np.ix_(r, c)][inside]
    return window, inside


def _check_position(step: LayerOutput, row: int, col: int, channel: int) -> None:
    h, w, c = step.output.shape
    if not (0 <= row < h and 0 <= col < w and 0 <= channel < c):
        raise ValueError(f"layer {step.layer.name!r}: position (row={row}, col={col}, "
                         f"channel={channel}) is outside its output of shape {(h, w, c)}")


def explain(step: LayerOutput, row: int, col: int, channel: int) -> dict[str, Any]:
    """How ``step.output[row, col, channel]`` was made from ``step.input``.

    Returns a JSON-ready dict with ``kind`` ``"conv"``, ``"max_pool"`` or ``"avg_pool"``.

    Raises:
        ValueError: the layer is not :func:`explainable` or the position is outside its output.
    """
    layer = step.layer
    if not explainable(layer):
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): only Conv2D, "
                         "DepthwiseConv2D, MaxPool2D and AvgPool2D outputs can be explained")
    _check_position(step, row, col, channel)
    base = {"layer": step.name, "type": type(layer).__name__, "row": row, "col": col,
            "channel": channel, "model_value": float(step.output[row, col, channel])}
    if isinstance(layer, (Conv2D, DepthwiseConv2D)):
        return {**base, **_explain_conv(layer, step.input, row, col, channel)}
    return {**base, **_explain_pool(layer, step.input, row, col, channel)}


def _explain_conv(layer: Any, x: np.ndarray, row: int, col: int, f: int) -> dict[str, Any]:
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    (top, _), (left, _) = resolve_padding(layer._padding, x.shape[:2], layer.kernel_size,
                                          layer.strides, layer.dilation_rate)
    rows = row * sh - top + dh * np.arange(kh)
    cols = col * sw - left + dw * np.arange(kw)
    if isinstance(layer, DepthwiseConv2D):  # output c * M + m reads input channel c only
        first, per_group = f // layer.depth_multiplier, 1
        kernel = layer.params["kernel"][:, :, first:first + 1, f % layer.depth_multiplier]
    else:
        per_group = x.shape[2] // layer.groups
        first = (f // (layer.filters // layer.groups)) * per_group
        kernel = layer.params["kernel"][:, :, :, f]
    window, inside = _window(x[:, :, first:first + per_group], rows, cols, 0.0)
    kernel = np.asarray(kernel, dtype=np.float64)
    products = window * kernel
    total = float(products.sum())
    bias = float(layer.params["bias"][f]) if layer.use_bias else 0.0
    pre = total + bias
    act = activations.get(layer.activation)
    value = float(act.forward(np.array([pre]))[0]) if act is not None else pre
    return {"kind": "conv", "window": window.tolist(), "inside": inside.tolist(),
            "kernel": kernel.tolist(), "products": products.tolist(),
            "channel_sums": products.sum(axis=(0, 1)).tolist(),
            "input_channels": [first, first + per_group], "rows": rows.tolist(),
            "cols": cols.tolist(), "sum": total, "bias": bias, "pre_activation": pre,
            "activation": layer.activation or "linear", "value": value}


def _explain_pool(layer: Any, x: np.ndarray, row: int, col: int, c: int) -> dict[str, Any]:
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    _, top, _ = pool_padding(x.shape[0], ph, sh, layer.padding)
    _, left, _ = pool_padding(x.shape[1], pw, sw, layer.padding)
    rows, cols = row * sh - top + np.arange(ph), col * sw - left + np.arange(pw)
    window, inside = _window(x[:, :, c:c + 1], rows, cols, np.nan)
    values = window[:, :, 0]
    result: dict[str, Any] = {"rows": rows.tolist(), "cols": cols.tolist(),
                              "inside": inside.tolist(),
                              "window": [[None if np.isnan(v) else v for v in r]
                                         for r in values.tolist()]}
    if isinstance(layer, MaxPool2D):
        winner = np.unravel_index(np.nanargmax(values), values.shape)
        return {**result, "kind": "max_pool", "winner": [int(winner[0]), int(winner[1])],
                "value": float(values[winner])}
    # Keras's average pooling divides by the cells inside the image, not the padding
    return {**result, "kind": "avg_pool", "count": int(inside.sum()),
            "value": float(np.nanmean(values))}
