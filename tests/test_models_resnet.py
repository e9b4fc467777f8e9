"""``cnnumpy.models.resnet`` and ``resnet18`` against plain-torch twins written with
torchvision's module names (the torchvision wheel does not import beside the CPU torch here):
same parameter names, shapes and counts, and the same outputs in float64 once the twin's
weights are copied in by name.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import models

torch = pytest.importorskip("torch")
nn = torch.nn


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, its module names included."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    """torchvision's ResNet-18 (``cifar=False``) or He et al.'s CIFAR ResNet."""

    def __init__(self, widths, blocks, num_classes, cin=3, cifar=False):
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(cin, widths[0], 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(cin, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        previous = widths[0]
        for i, width in enumerate(widths):
            stages = [BasicBlock(previous if b == 0 else width, width,
                                 2 if i > 0 and b == 0 else 1) for b in range(blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stages))
            previous = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(len([k for k in self._modules if k.startswith("layer")])):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def trainable_count(model) -> int:
    return sum(int(np.prod(p.shape)) for p in model.trainable_weights()[0])


def copy_from_torch(net, model) -> None:
    """Fill ``model`` from ``net``'s state dict by torchvision's names."""
    state = {k: v.detach().numpy().astype(np.float64) for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    seen = set()
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        get = {k: state[f"{layer.name}.{k}"] for k in ("weight", "bias", "running_mean",
                                                       "running_var")
               if f"{layer.name}.{k}" in state}
        seen.update(f"{layer.name}.{k}" for k in get)
        kind = type(layer).__name__
        if kind == "Conv2D":
            new = {"kernel": get["weight"].transpose(2, 3, 1, 0)}
        elif kind == "Dense":
            new = {"kernel": get["weight"].T, "bias": get["bias"]}
        else:
            new = {"gamma": get["weight"], "beta": get["bias"],
                   "moving_mean": get["running_mean"], "moving_variance": get["running_var"]}
        layer.set_weights(new)
    assert seen == set(state), set(state) ^ seen  # every torch tensor used, by name


def randomize_bn_stats(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture
def float64():
    before = cnnumpy.floatx()
    cnnumpy.set_floatx("float64")
    yield
    cnnumpy.set_floatx(before)


def test_resnet18_has_torchvisions_parameter_names_shapes_and_count():
    model = models.resnet18()
    net = TorchResNet((64, 128, 256, 512), 2, 1000)
    assert torch_count(net) == trainable_count(model) == 11_689_512
    assert model.input_shape == (224, 224, 3) and model.output_shape == (1000,)
    names = {layer.name for layer in model.layers}
    for key, value in net.state_dict().items():
        layer, _, _ = key.rpartition(".")
        if key.endswith("num_batches_tracked"):
            continue
        assert layer in names, key
        shapes = {w.shape for w in model.get_layer(layer).get_weights().values()}
        assert tuple(value.shape) in shapes or tuple(value.shape[::-1]) in shapes or (
            value.ndim == 4 and tuple(value.permute(2, 3, 1, 0).shape) in shapes), key
    assert {"conv1", "bn1", "layer2.0.downsample.0", "layer4.1.bn2", "fc"} <= names
    assert "layer1.0.downsample.0" not in names  # stage 1 keeps the identity shortcut


def test_resnet18_equals_its_torch_twin_in_float64(float64):
    torch.manual_seed(0)
    net = TorchResNet((64, 128, 256, 512), 2, 7).double().eval()
    randomize_bn_stats(net)
    model = models.resnet18(num_classes=7, input_shape=(45, 45, 3),  # odd sizes: padding
                            classifier_activation=None)
    copy_from_torch(net, model)
    x = np.random.default_rng(0).standard_normal((2, 45, 45, 3))
    with torch.no_grad():
        expected = net(torch.tensor(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-10, atol=1e-10)


def test_resnet20_is_he_et_als_cifar_network_with_its_torch_twins_count_and_outputs(float64):
    model = models.resnet(depth=20, num_classes=10, input_shape=(32, 32, 3), width=16)
    torch.manual_seed(1)
    net = TorchResNet((16, 32, 64), 3, 10, cifar=True).double().eval()
    assert torch_count(net) == trainable_count(model) == 272_474
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 19 + 2  # 19 in the main path (and fc: 20 layers), 2 projections
    assert model.name == "resnet20" and model.output_shape == (10,)
    randomize_bn_stats(net, 1)
    copy_from_torch(net, model)
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3))
    with torch.no_grad():
        expected = torch.softmax(net(torch.tensor(x.transpose(0, 3, 1, 2))), 1).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("depth, width, shape, blocks", [(8, 4, (12, 12, 1), 1),
                                                         (14, 2, (9, 9, 2), 2)])
def test_resnet_depth_sets_the_blocks_per_stage(depth, width, shape, blocks):
    model = models.resnet(depth, num_classes=3, input_shape=shape, width=width)
    adds = [layer.name for layer in model.layers if type(layer).__name__ == "Add"]
    assert len(adds) == 3 * blocks and adds[-1] == f"layer3.{blocks - 1}.add"
    net = TorchResNet((width, 2 * width, 4 * width), blocks, 3, cin=shape[-1], cifar=True)
    assert trainable_count(model) == torch_count(net)
    assert model.predict(np.zeros((1, *shape), np.float32)).shape == (1, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"depth": 21}, "6n \\+ 2"), ({"depth": 2}, "6n \\+ 2"), ({"width": 0}, "width"),
    ({"num_classes": 1.5}, "num_classes"), ({"depth": True}, "depth")])
def test_resnet_refuses_bad_arguments_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.resnet(**kwargs)
