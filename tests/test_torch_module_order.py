"""``from_torch`` matches modules in their numeric order, whatever order a state dict's keys
come in (a ``.safetensors`` file sorts them as strings: ``10.weight`` before ``4.weight``)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers

torch = pytest.importorskip("torch")
nn = torch.nn
from cnnumpy.torch import from_torch  # noqa: E402


def torch_lenet():
    """docs/deploy.md's PyTorch LeNet: eleven modules, weights in 0, 1, 4, 8 and 10."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(400, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.eval()


def cnnumpy_lenet():
    model = cnnumpy.Sequential([
        layers.Conv2D(8, 5, padding="same", input_shape=(28, 28, 1)),
        layers.BatchNormalization(epsilon=1e-5), layers.Activation("relu"), layers.MaxPool2D(2),
        layers.Conv2D(16, 5, activation="relu"), layers.MaxPool2D(2), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10)])
    model.build()
    return model


def expected_and_images(net):
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype(np.float32)
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy(), x


@pytest.mark.parametrize("kind", ["safetensors file", "sorted dict", "pt file", "module"])
def test_the_deploy_guide_lenet_loads_from_every_source(tmp_path, kind):
    from safetensors.torch import save_file

    net = torch_lenet()
    state = net.state_dict()
    if kind == "safetensors file":
        source = str(tmp_path / "lenet.safetensors")
        save_file(state, source)
    elif kind == "sorted dict":  # as safetensors' load_file returns it
        source = {k: state[k] for k in sorted(state)}
    elif kind == "pt file":
        source = str(tmp_path / "lenet.pt")
        torch.save(state, source)
    else:
        source = net
    expected, x = expected_and_images(net)
    model = from_torch(source, cnnumpy_lenet())
    np.testing.assert_allclose(model.predict(x), expected, rtol=0, atol=1e-4)


def test_twenty_numbered_modules_in_a_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    mods = [nn.Linear(6, 6) if i % 2 == 0 else nn.Tanh() for i in range(21)]
    net = nn.Sequential(nn.Flatten(), *mods).eval()  # weights in 1, 3, ..., 21
    save_file(net.state_dict(), str(tmp_path / "deep.safetensors"))
    model = cnnumpy.Sequential([layers.Flatten(input_shape=(2, 3))]
                               + [layers.Dense(6, activation="tanh") for _ in range(10)]
                               + [layers.Dense(6)])
    model.build()
    from_torch(str(tmp_path / "deep.safetensors"), model)
    x = np.random.default_rng(1).normal(size=(3, 2, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=0, atol=1e-5)


def test_named_modules_keep_their_registration_order():
    net = nn.Sequential(OrderedDict(features=nn.Linear(4, 5), classifier=nn.Linear(5, 2)))
    model = cnnumpy.Sequential([layers.Dense(5, input_shape=(4,)), layers.Dense(2)])
    model.build()
    from_torch(net.state_dict(), model)  # "features" before "classifier", as registered
    np.testing.assert_array_equal(model.layers[1].params["kernel"],
                                  net.classifier.weight.detach().numpy().T)
    from cnnumpy.torch._import import _module_order

    assert _module_order(["b.10", "b.9", "a", "b.1.x", "b.1.c"]) == \
        ["b.1.x", "b.1.c", "b.9", "b.10", "a"]
