"""``to_torch``: the PyTorch twin of a Sequential, with the same weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cnnumpy import layers
from cnnumpy.functional.conv import resolve_padding
from cnnumpy.functional.conv_transpose import transpose_geometry
from cnnumpy.functional.pooling import pool_padding
from cnnumpy.graph_model import Model
from cnnumpy.torch._graph import GraphModule, graph_to_torch
from cnnumpy.torch._modules import AvgPool2dSame, KerasReLU, ReshapeNHWC

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
                "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": lambda: nn.ELU(1.0),
                "gelu": lambda: nn.GELU(approximate="tanh"), "relu6": nn.ReLU6,
                "swish": nn.SiLU, "silu": nn.SiLU}


def _relu(layer: layers.ReLU) -> nn.Module:
    options = (layer.max_value, layer.negative_slope, layer.threshold)
    if options == (None, 0.0, 0.0):
        return nn.ReLU()
    if options == (6.0, 0.0, 0.0):
        return nn.ReLU6()
    if options[0] is None and options[2] == 0.0:
        return nn.LeakyReLU(layer.negative_slope)
    return KerasReLU(*options)


def _reshaping(layer: layers.Layer, shape: tuple, flattened: tuple | None) -> list[nn.Module]:
    if type(layer) is layers.UpSampling2D:
        if layer.interpolation == "bilinear":
            return [nn.Upsample(scale_factor=layer.size, mode="bilinear", align_corners=False)]
        return [nn.Upsample(scale_factor=layer.size, mode="nearest")]
    if type(layer) is layers.Reshape:
        return [ReshapeNHWC(shape if len(shape) == 3 else flattened, layer.target_shape)]
    # ConstantPad2d (not ZeroPad2d, which from_torch reads as the next convolution's padding);
    # negative amounts crop.
    sign = 1 if type(layer) is layers.ZeroPadding2D else -1
    (top, bottom), (left, right) = layer.padding if sign == 1 else layer.cropping
    return [nn.ConstantPad2d(tuple(sign * p for p in (left, right, top, bottom)), 0.0)]


_RESHAPING = (layers.UpSampling2D, layers.ZeroPadding2D, layers.Cropping2D, layers.Reshape)


def _tensor(array: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(array), dtype=dtype)


def _set(module: nn.Module, dtype: torch.dtype, **values: Any) -> nn.Module:
    with torch.no_grad():
        for name, array in values.items():
            getattr(module, name).copy_(_tensor(array, dtype))
    return module


def _conv(layer: layers.Conv2D, shape: tuple, dtype: torch.dtype) -> list[nn.Module]:
    w = layer.get_weights()
    return _conv_modules(layer, shape, layer.filters, w["kernel"], w.get("bias"), layer.groups,
                         dtype)


def _conv_modules(layer: Any, shape: tuple, filters: int, kernel: Any, bias: Any, groups: int,
                  dtype: torch.dtype) -> list[nn.Module]:
    """An nn.Conv2d (after a ZeroPad2d when the padding is asymmetric) with ``kernel``
    (kh, kw, C // groups, filters) and the layer's strides, padding and dilation."""
    (top, bottom), (left, right) = resolve_padding(
        layer.padding, shape[:2], layer.kernel_size, layer.strides, layer.dilation_rate)
    symmetric = top == bottom and left == right
    conv = nn.Conv2d(shape[2], filters, layer.kernel_size, layer.strides,
                     padding=(top, left) if symmetric else 0, dilation=layer.dilation_rate,
                     groups=groups, bias=bias is not None, dtype=dtype)
    _set(conv, dtype, weight=kernel.transpose(3, 2, 0, 1))
    if bias is not None:
        _set(conv, dtype, bias=bias)
    return [conv] if symmetric else [nn.ZeroPad2d((left, right, top, bottom)), conv]


def _depthwise(layer: layers.DepthwiseConv2D | layers.SeparableConv2D, shape: tuple,
               dtype: torch.dtype) -> list[nn.Module]:
    """A grouped nn.Conv2d (one group per channel); for SeparableConv2D a 1x1 one after it."""
    w = layer.get_weights()
    c, multiplier = shape[2], layer.depth_multiplier
    kernel = w["kernel" if "kernel" in w else "depthwise_kernel"]
    kernel = kernel.reshape(*layer.kernel_size, 1, c * multiplier)
    if type(layer) is layers.DepthwiseConv2D:
        return _conv_modules(layer, shape, c * multiplier, kernel, w.get("bias"), c, dtype)
    pointwise = nn.Conv2d(c * multiplier, layer.filters, 1, bias=layer.use_bias, dtype=dtype)
    _set(pointwise, dtype, weight=w["pointwise_kernel"].transpose(3, 2, 0, 1))
    if layer.use_bias:
        _set(pointwise, dtype, bias=w["bias"])
    return [*_conv_modules(layer, shape, c * multiplier, kernel, None, c, dtype), pointwise]


def _conv_transpose(layer: layers.Conv2DTranspose, shape: tuple,
                    dtype: torch.dtype) -> list[nn.Module]:
    """An nn.ConvTranspose2d; where its symmetric padding cannot cut what Keras' "same"
    cuts, one without padding followed by a crop (a ConstantPad2d with negative amounts)."""
    extra = layer.output_padding or (None, None)
    geometry = [transpose_geometry(shape[a], layer.kernel_size[a], layer.strides[a],
                                   layer.dilation_rate[a], layer.padding, extra[a])
                for a in (0, 1)]
    full = [(shape[a] - 1) * layer.strides[a] + (layer.kernel_size[a] - 1)
            * layer.dilation_rate[a] + 1 for a in (0, 1)]
    before = [pads[0] for _, pads in geometry]
    after = [full[a] - before[a] - geometry[a][0] for a in (0, 1)]  # negative: added rows
    symmetric_extra = [before[a] - after[a] for a in (0, 1)]
    limit = [max(s, d) for s, d in zip(layer.strides, layer.dilation_rate, strict=True)]
    symmetric = all(0 <= symmetric_extra[a] < limit[a] for a in (0, 1))
    conv = nn.ConvTranspose2d(
        shape[2], layer.filters, layer.kernel_size, layer.strides,
        padding=tuple(before) if symmetric else 0,
        output_padding=tuple(symmetric_extra) if symmetric else tuple(max(-a, 0) for a in after),
        dilation=layer.dilation_rate, bias=layer.use_bias, dtype=dtype)
    w = layer.get_weights()
    _set(conv, dtype, weight=w["kernel"].transpose(3, 2, 0, 1))  # (C, filters, kh, kw)
    if layer.use_bias:
        _set(conv, dtype, bias=w["bias"])
    if symmetric:
        return [conv]
    crop = (-before[1], -max(after[1], 0), -before[0], -max(after[0], 0))
    return [conv, nn.ConstantPad2d(crop, 0.0)]


def _pool(layer: layers.MaxPool2D | layers.AvgPool2D, shape: tuple) -> list[nn.Module]:
    (kh, kw), (sh, sw) = layer.pool_size, layer.strides
    _, top, bottom = pool_padding(shape[0], kh, sh, layer.padding)
    _, left, right = pool_padding(shape[1], kw, sw, layer.padding)
    pads = (left, right, top, bottom)
    if isinstance(layer, layers.MaxPool2D):
        pool = nn.MaxPool2d((kh, kw), (sh, sw))
        return [nn.ConstantPad2d(pads, float("-inf")), pool] if any(pads) else [pool]
    if top == bottom and left == right:  # also "valid": no padding at all
        return [nn.AvgPool2d((kh, kw), (sh, sw), padding=(top, left), count_include_pad=False)]
    return [AvgPool2dSame((kh, kw), (sh, sw), pads)]


def _dense(layer: layers.Dense, shape: tuple, dtype: torch.dtype,
           flattened: tuple | None) -> list[nn.Module]:
    kernel = layer.get_weights()["kernel"]
    bias = {"bias": layer.get_weights()["bias"]} if layer.use_bias else {}
    if len(shape) == 3:  # on the channels of an image: a 1x1 convolution in NCHW
        conv = nn.Conv2d(shape[2], layer.units, 1, bias=layer.use_bias, dtype=dtype)
        return [_set(conv, dtype, weight=kernel.T[:, :, None, None], **bias)]
    if flattened is not None:  # rows in (H, W, C) order -> columns in (C, H, W) order
        kernel = kernel.reshape(*flattened, layer.units).transpose(2, 0, 1, 3)
    linear = nn.Linear(shape[-1], layer.units, bias=layer.use_bias, dtype=dtype)
    return [_set(linear, dtype, weight=kernel.reshape(shape[-1], layer.units).T, **bias)]


def _batch_norm(layer: layers.BatchNormalization, shape: tuple, dtype: torch.dtype,
                flattened: tuple | None) -> list[nn.Module]:
    if len(shape) not in (1, 3):
        raise ValueError(f"cnnumpy.torch.to_torch: {layer.label} normalizes inputs of shape "
                         f"{shape}; PyTorch's BatchNorm1d/2d need (features,) or (H, W, C)")
    kind = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    bn = kind(shape[-1], eps=layer.epsilon, momentum=round(1 - layer.momentum, 12), dtype=dtype)
    w = layer.get_weights()
    if flattened is not None:  # features in (H, W, C) order -> (C, H, W) order
        w = {k: v.reshape(flattened).transpose(2, 0, 1).ravel() for k, v in w.items()}
    return [_set(bn, dtype, weight=w["gamma"], bias=w["beta"], running_mean=w["moving_mean"],
                 running_var=w["moving_variance"])]


def _random_crop(layer: layers.RandomCrop, shape: tuple) -> list[nn.Module]:
    h, w = shape[:2]
    if (layer.height, layer.width) == (h, w):
        return [nn.Identity()]
    top = (h + 2 * layer.padding - layer.height) // 2 - layer.padding
    left = (w + 2 * layer.padding - layer.width) // 2 - layer.padding
    # The center window at inference: pad (or, with negative amounts, crop) each side. Not a
    # ZeroPad2d, which from_torch reads as the padding of the convolution that follows.
    return [nn.ConstantPad2d((-left, left + layer.width - w, -top, top + layer.height - h), 0.0)]


def _activation(name: str | None, shape: tuple) -> list[nn.Module]:
    if name is None:
        return []
    if name == "softmax":
        return [nn.Softmax(dim=1 if len(shape) == 3 else -1)]  # channels of an NCHW image
    return [_ACTIVATIONS[name]()]


_IDENTITY_AT_INFERENCE = (layers.RandomFlip, layers.RandomTranslation, layers.RandomRotation,
                          layers.RandomContrast, layers.RandomErasing)


def _modules(layer: layers.Layer, shape: tuple, dtype: torch.dtype,
             flattened: tuple | None) -> list[nn.Module]:
    """The PyTorch modules of one layer, its activation excluded."""
    kind = type(layer)
    if kind is layers.Conv2D:
        return _conv(layer, shape, dtype)
    if kind in (layers.DepthwiseConv2D, layers.SeparableConv2D):
        return _depthwise(layer, shape, dtype)
    if kind is layers.Conv2DTranspose:
        return _conv_transpose(layer, shape, dtype)
    if kind in (layers.MaxPool2D, layers.AvgPool2D):
        return _pool(layer, shape)
    if kind in (layers.GlobalAvgPool2D, layers.GlobalMaxPool2D):
        is_max = kind is layers.GlobalMaxPool2D
        return [nn.AdaptiveMaxPool2d(1) if is_max else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if kind is layers.Flatten:
        return [nn.Flatten()]
    if kind is layers.Dense:
        return _dense(layer, shape, dtype, flattened)
    if kind is layers.BatchNormalization:
        return _batch_norm(layer, shape, dtype, flattened)
    if kind is layers.Dropout:
        return [nn.Dropout(layer.rate)]
    if kind is layers.RandomCrop:
        return _random_crop(layer, shape)
    if kind is layers.Activation:
        return [] if layer.activation is not None else [nn.Identity()]
    if kind is layers.ReLU:
        return [_relu(layer)]
    if kind in _RESHAPING:
        return _reshaping(layer, shape, flattened)
    if kind in _IDENTITY_AT_INFERENCE:
        return [nn.Identity()]
    raise ValueError(f"cnnumpy.torch.to_torch: no PyTorch equivalent for {layer.label}")


def to_torch(model: Any) -> nn.Sequential | GraphModule:
    """The equivalent ``torch.nn.Sequential`` (in eval mode) with the same weights; for a graph
    :class:`~cnnumpy.Model`, a :class:`~cnnumpy.torch.GraphModule` whose ``forward`` follows
    the nodes (see :mod:`cnnumpy.torch._graph`).

    It takes NCHW images (``x.permute(0, 3, 1, 2)`` of what ``predict`` takes) and returns
    what ``predict`` returns, except that image outputs are NCHW. Its dtype is the model's.
    ``BatchNorm`` momentum is ``1 - momentum``; ``Dropout`` keeps its rate; augmentation
    layers become ``Identity`` (RandomCrop: the center window, via ``ConstantPad2d``).

    Raises:
        ValueError: the model is not built, or a layer has no PyTorch equivalent (named).

    Shape:
        input (N, C, H, W) for images, else ``(N, *input_shape)``.
    """
    if not getattr(model, "layers", None) or not model.built:
        raise ValueError("cnnumpy.torch.to_torch: the model is not built yet; train it, load "
                         "it, or call model.build(input_shape) first")
    dtype = torch.float64 if model.layers[0].dtype == np.float64 else torch.float32
    if isinstance(model, Model):
        return graph_to_torch(model, dtype, lambda layer, shape, flattened: [
            *_modules(layer, shape, dtype, flattened),
            *_activation(layer.activation, layer.compute_output_shape(shape))])
    modules: list[nn.Module] = []
    flattened = None  # the (H, W, C) of the last Flatten of an image, until a Dense uses it
    for layer in model.layers:
        shape = layer.input_shape
        modules += _modules(layer, shape, dtype, flattened)
        modules += _activation(layer.activation, layer.compute_output_shape(shape))
        if type(layer) is layers.Flatten:
            flattened = shape if len(shape) == 3 else None
        elif type(layer) in (layers.Dense, layers.Reshape):
            flattened = None
    return nn.Sequential(*modules).eval()
