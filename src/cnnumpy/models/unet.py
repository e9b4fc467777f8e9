"""U-Net (Ronneberger et al., 2015): an encoder-decoder for per-pixel classification.

``depth`` levels down, each two 3x3 convolutions (BN, ReLU) then 2x2 max pooling; a
bottleneck of two convolutions; ``depth`` levels up, each a 2x upsampling (a 2x2/2
``Conv2DTranspose``, or ``UpSampling2D`` and a 3x3 convolution), a ``Concatenate`` with the
same level's encoder output (the skip), and two convolutions; a 1x1 convolution with a
per-pixel softmax. Level ``i`` has ``base_filters * 2**i`` channels. "same" padding
throughout, so the output has the input's height and width (both must divide by
``2**depth``).

Layer names: ``down{i}_conv1``, ``down{i}_bn1``, ``down{i}_relu1`` (and ``..2``),
``down{i}_pool``, ``bottleneck_conv1`` ..., ``up{i}_upsample`` (and ``up{i}_upconv`` with
UpSampling2D), ``up{i}_concat``, ``up{i}_conv1`` ..., ``output``.
"""

from __future__ import annotations

from typing import Any

from cnnumpy import layers
from cnnumpy.graph import Input
from cnnumpy.graph_model import Model

UPSAMPLING = ("transpose", "nearest", "bilinear")


def _double_conv(x: Any, filters: int, name: str) -> Any:
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"unet: {what} must be a positive int, received {what}={value!r}")
    return value


def unet(input_shape: tuple[int, ...], num_classes: int, base_filters: int = 16,
         depth: int = 3, upsampling: str = "transpose") -> Model:
    """A U-Net: see the module docstring.

    Args:
        input_shape: per-sample ``(H, W, C)``, ``H`` and ``W`` multiples of ``2**depth``.
        num_classes: classes per pixel (the output's channels).
        base_filters: channels of the first level, doubled at each level down.
        depth: number of poolings (and of upsamplings).
        upsampling: "transpose" (a learned 2x2/2 ``Conv2DTranspose``), or "nearest" or
            "bilinear" (``UpSampling2D`` followed by a 3x3 convolution).

    Shape:
        input ``(N, H, W, C)``; output ``(N, H, W, num_classes)``, probabilities per pixel.
    """
    _positive_int(num_classes, "num_classes")
    _positive_int(base_filters, "base_filters")
    _positive_int(depth, "depth")
    if upsampling not in UPSAMPLING:
        raise ValueError(f"unet: upsampling must be one of {UPSAMPLING}, received "
                         f"upsampling={upsampling!r}")
    x = inputs = Input(input_shape, name="input")
    if len(x.shape) != 3 or x.shape[0] % 2 ** depth or x.shape[1] % 2 ** depth:
        raise ValueError(f"unet: input_shape must be (H, W, C) with H and W multiples of "
                         f"2**depth = {2 ** depth}, received input_shape={x.shape}")
    skips = []
    for level in range(depth):
        x = _double_conv(x, base_filters * 2 ** level, f"down{level}")
        skips.append(x)
        x = layers.MaxPool2D(2, name=f"down{level}_pool")(x)
    x = _double_conv(x, base_filters * 2 ** depth, "bottleneck")
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        if upsampling == "transpose":
            x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}_upsample")(x)
        else:
            x = layers.UpSampling2D(2, upsampling, name=f"up{level}_upsample")(x)
            x = layers.Conv2D(filters, 3, padding="same", name=f"up{level}_upconv")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([skips[level], x])
        x = _double_conv(x, filters, f"up{level}")
    x = layers.Conv2D(num_classes, 1, activation="softmax", name="output")(x)
    return Model(inputs, x, name="unet")
