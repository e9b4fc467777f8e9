"""Graph models (cnnumpy.Model) and PyTorch: to_torch equals predict and has equal gradients
(float64, 1e-10); from_torch fills graph models by layer name or in node order, including
torchvision's ResNet-18 (written here in plain torch with torchvision's module names)."""

from __future__ import annotations

import numpy as np
import pytest
from graph_models import ARCHITECTURES, builders, built_in, randomize, randomize_batch_norms

import cnnumpy
from cnnumpy import layers as L
from cnnumpy import models

torch = pytest.importorskip("torch")
from cnnumpy.torch import GraphModule, from_torch, to_torch  # noqa: E402

nn = torch.nn
CLOSE = dict(rtol=1e-10, atol=1e-10)


def nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def run_torch(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return nhwc(net(torch.tensor(nchw(x))).numpy())


def weights_of(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}


def assert_same_weights(a, b):
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].keys() == wb[name].keys(), name
        for key in wa[name]:
            np.testing.assert_array_equal(wa[name][key], wb[name][key], err_msg=f"{name}.{key}")


def check_twin(model, batch=4):
    """to_torch(model) equals predict, and in training mode its output, input gradient and
    weight gradients equal cnnumpy's (float64, 1e-10)."""
    net = to_torch(model)
    assert isinstance(net, GraphModule) and not net.training
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *model.input_shape))
    np.testing.assert_allclose(run_torch(net, x), model.predict(x), **CLOSE)

    # Gradients in training mode (batch statistics in BatchNormalization).
    net.train()
    y = model.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dx = model.backward(dy.copy())
    xt = torch.tensor(nchw(x), requires_grad=True)
    yt = net(xt)
    yt.backward(torch.tensor(nchw(dy)))
    np.testing.assert_allclose(nhwc(yt.detach().numpy()), y, **CLOSE)
    np.testing.assert_allclose(nhwc(xt.grad.numpy()), dx, **CLOSE)
    # The weight gradients, put where to_torch puts the weights: PyTorch's layouts and names.
    for layer in model.layers:
        layer.set_weights({**layer.get_weights(), **{k: layer.grads[k] for k in layer.params}})
    expected = dict(to_torch(model).named_parameters())
    got = dict(net.named_parameters())
    assert got.keys() == expected.keys() and got
    for key, param in got.items():
        np.testing.assert_allclose(param.grad.numpy(), expected[key].detach().numpy(),
                                   err_msg=key, **CLOSE)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_to_torch_equals_predict_with_equal_gradients(name):
    model = ARCHITECTURES[name]("float64")
    randomize(model)
    check_twin(model)


@pytest.mark.parametrize("name", ["resnet20", "unet_transpose", "unet_bilinear"])
def test_model_builders_to_torch(name):
    cnnumpy.set_seed(0)
    model = builders("float64", side=16)[name]()
    randomize_batch_norms(model)
    check_twin(model, batch=2)


def test_mobilenet_v2_to_torch_in_float32():
    """PyTorch runs float64 grouped convolutions one group at a time (seconds for a whole
    MobileNetV2), so the full network is checked in float32 (its block in float64 above)."""
    cnnumpy.set_seed(0)
    model = builders("float32", side=16)["mobilenet_v2"]()
    randomize_batch_norms(model)
    x = np.random.default_rng(1).standard_normal((2, *model.input_shape)).astype(np.float32)
    want = model.predict(x)
    np.testing.assert_allclose(run_torch(to_torch(model), x), want, rtol=0,
                               atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("name", ["every_merge", "unet_level_conv_transpose"])
def test_from_torch_round_trip_by_module_state_dict_and_file(name, tmp_path):
    from safetensors.torch import save_file

    model = ARCHITECTURES[name]("float64")
    randomize(model)
    net = to_torch(model)
    save_file(net.state_dict(), tmp_path / "net.safetensors")
    for source in (net, net.state_dict(), tmp_path / "net.safetensors",
                   dict(reversed(net.state_dict().items()))):  # by name: the order is free
        fresh = ARCHITECTURES[name]("float64")
        assert_same_weights(from_torch(source, fresh), model)


def test_from_torch_pairs_in_node_order_when_names_differ():
    model = ARCHITECTURES["mobilenet_v2_inverted_residual"]("float64")
    randomize(model)
    state = to_torch(model).state_dict()
    prefixes = list(dict.fromkeys(key.rpartition(".")[0] for key in state))
    renamed = {f"features.{prefixes.index(k.rpartition('.')[0])}.{k.rpartition('.')[2]}": v
               for k, v in state.items()}
    fresh = ARCHITECTURES["mobilenet_v2_inverted_residual"]("float64")
    assert_same_weights(from_torch(renamed, fresh), model)


def test_from_torch_by_name_reports_every_problem_and_loads_nothing():
    model = ARCHITECTURES["resnet_basic_blocks"]("float64")
    state = dict(to_torch(model).state_dict())
    state["b0_conv1.weight"] = state["b0_conv1.weight"][:4]
    state["extra.weight"] = torch.zeros(3)
    fresh = ARCHITECTURES["resnet_basic_blocks"]("float64")
    before = weights_of(fresh)
    with pytest.raises(ValueError, match=r"(?s)2 problems(?=.*'b0_conv1'.*has shape \(4, 8, 3, "
                                         r"3\), expected \(8, 8, 3, 3\))(?=.*'extra': no layer)"):
        from_torch(state, fresh)
    for name, values in weights_of(fresh).items():
        for key, value in values.items():
            np.testing.assert_array_equal(value, before[name][key])


def test_flattened_output_is_in_cnnumpy_order_and_names_are_sanitized():
    x = cnnumpy.Input((4, 5, 3), dtype="float64")
    h = L.Conv2D(2, 3, padding="same", name="block.0/conv")(x)
    model = cnnumpy.Model(x, L.Flatten(name="forward")(h))  # "forward" is a Module method
    randomize(model)
    net = to_torch(model)
    assert [name for name, _ in net.named_children()] == ["block_0_conv", "forward_"]
    x_value = np.random.default_rng(0).standard_normal((2, 4, 5, 3))
    np.testing.assert_allclose(run_torch(net, x_value), model.predict(x_value), **CLOSE)


# ----- torchvision's ResNet-18, in plain torch with torchvision's module names ------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]
        for i, width in enumerate(widths):
            cin = widths[max(i - 1, 0)]
            stage = nn.Sequential(BasicBlock(cin, width, 1 if i == 0 else 2),
                                  BasicBlock(width, width, 1))
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_torchvision_resnet18_state_dict_loads_by_name(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = ResNet18(num_classes=10).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3))
    want = run_torch(net, x)
    save_file(net.state_dict(), tmp_path / "resnet18.safetensors")
    for source in (net.state_dict(), tmp_path / "resnet18.safetensors", net):
        model = built_in("float64", models.resnet18, 10, (64, 64, 3),
                         classifier_activation=None)
        from_torch(source, model)
        got = model.predict(x)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * np.abs(want).max())
    back = to_torch(model)  # and back: the same outputs from cnnumpy's twin
    np.testing.assert_allclose(run_torch(back, x), want, rtol=0, atol=1e-8 * np.abs(want).max())
