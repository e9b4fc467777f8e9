"""MobileNetV2 (Sandler et al., 2018) in the layout of Keras' ``applications.MobileNetV2``.

A 3x3/2 convolution to 32 channels, 17 inverted residual blocks, a 1x1 convolution to 1280
channels, global average pooling and a dense classifier. Each block::

    x -> 1x1 conv (expand, x6) -> BN -> ReLU6 -> 3x3 depthwise /s -> BN -> ReLU6
      -> 1x1 conv (project, linear) -> BN [-> Add(x) when s == 1 and the channels match]

The first block does not expand. Channel counts are multiplied by ``alpha`` and rounded to
multiples of 8 (never below 8, never more than 10% down), as Keras does. Layer names are
Keras': ``Conv1``, ``bn_Conv1``, ``expanded_conv_depthwise``, ``block_1_expand``,
``block_1_expand_BN``, ``block_1_depthwise``, ``block_1_project_BN``, ``block_3_add``,
``Conv_1``, ``Conv_1_bn``, ``out_relu``, ``predictions``. Stride-2 layers use "same" padding
(one pixel at the bottom and right of an even size), which equals Keras' ``correct_pad``.

Two differences from Keras, both for training small images from scratch:

- ``small_input``: on images under 64 pixels a side (CIFAR's 32x32, 28x28 digits) the stem
  and the first stride-2 block (``block_1``) run at stride 1, as is usual for CIFAR, so the
  network downsamples 8 times instead of 32 (32x32 ends at 4x4, not 1x1).
- BatchNormalization's momentum is 0.9 (Keras: 0.999, which suits ImageNet-length runs but
  leaves the moving statistics far from the data after a few epochs).
"""

from __future__ import annotations

from typing import Any

from cnnumpy import layers
from cnnumpy.graph import Input
from cnnumpy.graph_model import Model

# (expansion, filters, stride, repeats) per group of blocks, Keras' block_0 ... block_16
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 3), (6, 64, 2, 4), (6, 96, 1, 3),
           (6, 160, 2, 3), (6, 320, 1, 1))
_BN_MOMENTUM, _BN_EPSILON = 0.9, 1e-3


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``divisor`` and not
    more than 10% below ``value`` (Keras' and the paper's ``_make_divisible``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu6(x: Any, filters: int, name: str, bn: str, relu: str | None,
                   kernel: int = 1, stride: int = 1) -> Any:
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=name)(x)
    x = layers.BatchNormalization(_BN_MOMENTUM, _BN_EPSILON, name=bn)(x)
    return x if relu is None else layers.ReLU(6.0, name=relu)(x)


def _inverted_residual(x: Any, expansion: int, filters: int, stride: int, block: int) -> Any:
    channels = x.shape[-1]
    prefix = f"block_{block}_" if block else "expanded_conv_"
    h = x
    if block:  # block_0 does not expand
        h = _conv_bn_relu6(h, expansion * channels, prefix + "expand", prefix + "expand_BN",
                           prefix + "expand_relu")
    h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                               depthwise_initializer="he_normal", name=prefix + "depthwise")(h)
    h = layers.BatchNormalization(_BN_MOMENTUM, _BN_EPSILON, name=prefix + "depthwise_BN")(h)
    h = layers.ReLU(6.0, name=prefix + "depthwise_relu")(h)
    h = _conv_bn_relu6(h, filters, prefix + "project", prefix + "project_BN", None)
    if stride == 1 and channels == filters:
        h = layers.Add(name=prefix + "add")([x, h])
    return h


def mobilenet_v2(alpha: float = 1.0, num_classes: int = 1000,
                 input_shape: tuple[int, ...] = (224, 224, 3), small_input: bool | None = None,
                 classifier_activation: str | None = "softmax") -> Model:
    """MobileNetV2: see the module docstring. 3,504,872 trainable parameters at ``alpha=1``
    with 1000 classes, as Keras' (3,538,984 with BN's moving statistics).

    Args:
        alpha: width multiplier of every layer (0.35, 0.5, 0.75, 1.0, 1.3, 1.4 in Keras'
            ImageNet weights; any positive number here). The last convolution keeps 1280
            channels unless ``alpha > 1``.
        num_classes: outputs of the classifier.
        input_shape: per-sample ``(H, W, C)``.
        small_input: stride 1 in the stem and ``block_1``; default (None): when the image is
            under 64 pixels on a side.
        classifier_activation: "softmax" (default), or None for logits.

    Shape:
        input ``(N, H, W, C)``; output ``(N, num_classes)``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"mobilenet_v2: alpha must be a positive number, received "
                         f"alpha={alpha!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"mobilenet_v2: num_classes must be a positive int, received "
                         f"num_classes={num_classes!r}")
    x = inputs = Input(input_shape, name="input")
    if small_input is None:
        small_input = min(x.shape[:2]) < 64
    x = _conv_bn_relu6(x, make_divisible(32 * alpha), "Conv1", "bn_Conv1", "Conv1_relu",
                       kernel=3, stride=1 if small_input else 2)
    block = 0
    for expansion, filters, stride, repeats in _BLOCKS:
        for i in range(repeats):
            s = stride if i == 0 and not (small_input and block == 1) else 1
            x = _inverted_residual(x, expansion, make_divisible(int(filters * alpha)), s,
                                   block)
            block += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = _conv_bn_relu6(x, last, "Conv_1", "Conv_1_bn", "out_relu")
    x = layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return Model(inputs, x, name=f"mobilenetv2_{alpha:g}")


def mobilenet_v2_small(input_shape: tuple[int, ...], num_classes: int) -> Model:
    """The CLI's ``--model mobilenet-v2-small``: ``mobilenet_v2(0.35, ...)`` (the smallest of
    Keras' widths), with the small-input strides on images under 64 pixels a side."""
    return mobilenet_v2(0.35, num_classes, input_shape)
