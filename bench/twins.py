"""PyTorch twins of the benchmark's graph models, written in plain torch (no torchvision).

* :func:`resnet20`: the CIFAR ResNet-20 of ``cnnumpy.models.resnet(depth=20)``, torchvision's
  BasicBlock and module names (``conv1``, ``layer2.0.downsample.0``, ...), so
  ``cnnumpy.torch.from_torch`` pairs the weights by name.
* :func:`mobilenet_v2`: ``cnnumpy.models.mobilenet_v2(alpha, input_shape=(32, 32, 3))`` with the
  small-input strides (stem and ``block_1`` at stride 1); stride-2 layers pad one pixel at the
  bottom and right, as Keras' "same" does on even sizes. Modules with weights are registered in
  the order of cnnumpy's nodes, so ``from_torch`` pairs them in order.

Both return logits (cnnumpy's models end in a softmax, which the loss takes into account);
``tests/test_bench_twins.py`` checks parameter counts and float64 outputs against cnnumpy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from cnnumpy.models.mobilenet import make_divisible


def _bn(channels: int, eps: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=0.1)  # Keras momentum 0.9


class BasicBlock(nn.Module):
    """conv 3x3/s, BN, ReLU, conv 3x3, BN, + shortcut (1x1/s conv and BN if the shape
    changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout, 1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout, 1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            _bn(cout, 1e-5))

    def forward(self, x: Any) -> Any:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, depth: int = 20, width: int = 16, in_channels: int = 3,
                 classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = _bn(width, 1e-5)
        cin = width
        for stage in range(3):
            blocks = []
            for block in range((depth - 2) // 6):
                cout = width * 2 ** stage
                blocks.append(BasicBlock(cin, cout, 2 if stage and not block else 1))
                cin = cout
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: Any) -> Any:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20(classes: int = 10) -> ResNet:
    return ResNet(20, 16, 3, classes)


class _ConvBN(nn.Module):
    """Conv (groups for depthwise), BN, optional ReLU6; stride 2 pads bottom and right."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, relu6: bool,
                 groups: int = 1) -> None:
        super().__init__()
        self.stride, self.kernel, self.relu6 = stride, kernel, relu6
        pad = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False)
        self.bn = _bn(cout, 1e-3)

    def forward(self, x: Any) -> Any:
        if self.stride != 1 and self.kernel > 1:
            x = F.pad(x, (0, 1, 0, 1))  # Keras "same" at stride 2 on even sizes
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expansion: int, cout: int, stride: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = _ConvBN(cin, mid, 1, 1, True) if expansion != 1 else None
        self.depthwise = _ConvBN(mid, mid, 3, stride, True, groups=mid)
        self.project = _ConvBN(mid, cout, 1, 1, False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Any) -> Any:
        h = x if self.expand is None else self.expand(x)
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 3), (6, 64, 2, 4), (6, 96, 1, 3),
          (6, 160, 2, 3), (6, 320, 1, 1))
"""(expansion, filters, stride, repeats) per group of blocks, as in the paper."""


class MobileNetV2(nn.Module):
    def __init__(self, alpha: float = 0.35, in_channels: int = 3, classes: int = 10) -> None:
        super().__init__()
        cin = make_divisible(32 * alpha)
        layers = [_ConvBN(in_channels, cin, 3, 1, True)]  # small input: stride 1
        for expansion, filters, stride, repeats in BLOCKS:
            for i in range(repeats):
                s = stride if i == 0 and len(layers) != 2 else 1  # block_1 at stride 1
                cout = make_divisible(int(filters * alpha))
                layers.append(InvertedResidual(cin, expansion, cout, s))
                cin = cout
        last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
        layers.append(_ConvBN(cin, last, 1, 1, True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x: Any) -> Any:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(alpha: float = 0.35, classes: int = 10) -> MobileNetV2:
    return MobileNetV2(alpha, 3, classes)
