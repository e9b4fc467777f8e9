"""Residual networks: the CIFAR ``resnet`` of He et al. and torchvision's ``resnet18``.

Both are :class:`cnnumpy.Model` graphs of the same BasicBlock::

    x -> conv 3x3/s -> BN -> ReLU -> conv 3x3 -> BN -> Add(shortcut) -> ReLU

where the shortcut is ``x`` itself, or a 1x1/s convolution and BN where the block changes the
shape ("projection"). Every 3x3 convolution pads one pixel on each side, as torchvision does
(Keras' "same" would pad only the bottom and right at stride 2), so the networks equal their
PyTorch twins.

Layer names follow torchvision's module paths, so a torchvision state dict maps on by name:
``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.bn1``, ``layer1.0.conv2``, ``layer1.0.bn2``,
``layer2.0.downsample.0`` (the projection's convolution), ``layer2.0.downsample.1`` (its BN),
``fc``. The layers torchvision has no parameters for are named ``relu``, ``maxpool``,
``avgpool`` and, in each block, ``layerS.B.relu`` (after ``bn1``), ``layerS.B.add`` and
``layerS.B.relu_2`` (after the sum); ``maxpool_pad`` pads before the stem's max pooling.
"""

from __future__ import annotations

from typing import Any

from cnnumpy import layers
from cnnumpy.graph import Input
from cnnumpy.graph_model import Model

_BN_MOMENTUM, _BN_EPSILON = 0.9, 1e-5  # torch's BatchNorm2d defaults in Keras' terms


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, padding: int, conv: str,
             bn: str) -> Any:
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                      kernel_initializer="he_normal", name=conv)(x)
    return layers.BatchNormalization(_BN_MOMENTUM, _BN_EPSILON, name=bn)(x)


def _basic_block(x: Any, filters: int, stride: int, name: str) -> Any:
    """torchvision's BasicBlock named ``name`` (e.g. ``layer2.0``); projects the shortcut
    when ``stride`` or the channel count changes."""
    h = _conv_bn(x, filters, 3, stride, 1, f"{name}.conv1", f"{name}.bn1")
    h = layers.Activation("relu", name=f"{name}.relu")(h)
    h = _conv_bn(h, filters, 3, 1, 1, f"{name}.conv2", f"{name}.bn2")
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, 0, f"{name}.downsample.0",
                            f"{name}.downsample.1")
    h = layers.Add(name=f"{name}.add")([h, shortcut])
    return layers.Activation("relu", name=f"{name}.relu_2")(h)


def _check(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {what} must be a positive int, received {what}={value!r}")
    return value


def _head(x: Any, num_classes: int, classifier_activation: str | None) -> Any:
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    return layers.Dense(num_classes, activation=classifier_activation, name="fc")(x)


def resnet(depth: int = 20, num_classes: int = 10, input_shape: tuple[int, ...] = (32, 32, 3),
           width: int = 16, classifier_activation: str | None = "softmax") -> Model:
    """The CIFAR ResNet of He et al. (2015, section 4.2): ``depth = 6n + 2`` layers.

    A 3x3 convolution to ``width`` channels, three stages of ``n`` BasicBlocks at ``width``,
    ``2 * width`` and ``4 * width`` channels (the second and third start at stride 2 with a
    1x1 projection and BN on the shortcut; every other shortcut is the identity), global
    average pooling and a dense classifier. BN follows every convolution. ResNet-20 (``n = 3``,
    width 16) has 272,474 parameters for 10 classes (BN's moving statistics not counted).

    Args:
        depth: 20, 32, 44, 56, 110, ... (``6n + 2``).
        num_classes: outputs of the classifier.
        input_shape: per-sample ``(H, W, C)``; 28x28 digits work as they are.
        width: channels of the first stage.
        classifier_activation: "softmax" (default), or None for logits.

    Shape:
        input ``(N, H, W, C)``; output ``(N, num_classes)``.
    """
    where = "resnet"
    if _check(depth, "depth", where) < 8 or (depth - 2) % 6:
        raise ValueError(f"{where}: depth must be 6n + 2 (20, 32, 44, 56, 110, ...), "
                         f"received depth={depth!r}")
    _check(num_classes, "num_classes", where)
    _check(width, "width", where)
    x = inputs = Input(input_shape, name="input")
    x = _conv_bn(x, width, 3, 1, 1, "conv1", "bn1")
    x = layers.Activation("relu", name="relu")(x)
    for stage in range(3):
        for block in range((depth - 2) // 6):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width * 2 ** stage, stride, f"layer{stage + 1}.{block}")
    return Model(inputs, _head(x, num_classes, classifier_activation), name=f"resnet{depth}")


def resnet18(num_classes: int = 1000, input_shape: tuple[int, ...] = (224, 224, 3),
             classifier_activation: str | None = "softmax") -> Model:
    """torchvision's ResNet-18, layer for layer and named as its modules (see the module
    docstring): 11,689,512 parameters for 1000 classes, as torchvision counts them.

    A 7x7/2 convolution padded by 3 (no bias), BN, ReLU, 3x3/2 max pooling padded by 1 (here a
    zero padding before the pooling: the same result, as its inputs are ReLU outputs, >= 0),
    four stages of two BasicBlocks at 64, 128, 256 and 512 channels (stages 2-4 start at
    stride 2 with a 1x1/2 convolution and BN on the shortcut), global average pooling, ``fc``.

    Args:
        num_classes: outputs of ``fc``.
        input_shape: per-sample ``(H, W, C)``.
        classifier_activation: "softmax" (default), or None for the logits torchvision's
            network returns.

    Shape:
        input ``(N, H, W, C)``; output ``(N, num_classes)``.
    """
    _check(num_classes, "num_classes", "resnet18")
    x = inputs = Input(input_shape, name="input")
    x = _conv_bn(x, 64, 7, 2, 3, "conv1", "bn1")
    x = layers.Activation("relu", name="relu")(x)
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPool2D(3, strides=2, name="maxpool")(x)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, stride, f"layer{stage + 1}.{block}")
    return Model(inputs, _head(x, num_classes, classifier_activation), name="resnet18")


def resnet20(input_shape: tuple[int, ...], num_classes: int) -> Model:
    """The CLI's ``--model resnet20``: ``resnet(20, num_classes, input_shape, width=16)``."""
    return resnet(20, num_classes, input_shape)
