"""PyTorch weights in and out: random architectures both ways, and a model trained in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers as L
from cnnumpy import models
from cnnumpy.functional.conv import resolve_padding

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
from cnnumpy.torch import from_torch, to_torch  # noqa: E402

ACTIVATIONS = ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softmax", None]
TORCH_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01),
                     "elu": nn.ELU, "gelu": lambda: nn.GELU(approximate="tanh"),
                     "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


# ----- a random architecture, built independently in both libraries -----------------------------
def same_pads(size, k, s, d=1):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def random_spec(seed):
    """A list of (kind, kwargs) that fits an input of shape ``spec[0]``."""
    rng = np.random.default_rng(seed)
    h, w, c = (int(v) for v in rng.integers([6, 6, 1], [13, 13, 5]))
    spec, shape = [("input", (h, w, c))], (h, w, c)
    for _ in range(rng.integers(1, 4)):
        groups = int(rng.choice([g for g in (1, 2, 3) if shape[2] % g == 0]))
        pad = [("valid"), "same", 1, (0, 1), ((1, 0), (2, 1))][rng.integers(5)]
        conv = dict(filters=groups * int(rng.integers(1, 4)), kernel_size=int(rng.integers(1, 4)),
                    strides=int(rng.integers(1, 3)), padding=pad, groups=groups,
                    dilation_rate=int(rng.integers(1, 3)), use_bias=bool(rng.integers(2)),
                    activation=ACTIVATIONS[rng.integers(len(ACTIVATIONS))])
        if conv["strides"] > 1 and pad == "same":
            conv["dilation_rate"] = 1
        try:
            shape = L.Conv2D(**conv).compute_output_shape(shape)
        except ValueError:
            continue
        spec.append(("conv", conv))
        if rng.random() < 0.5:
            spec.append(("bn", {}))
        pool = dict(kind=["max", "avg"][rng.integers(2)], pool_size=int(rng.integers(2, 4)),
                    strides=int(rng.integers(1, 3)), padding=["valid", "same"][rng.integers(2)])
        if rng.random() < 0.6 and min(shape[:2]) >= pool["pool_size"]:
            spec.append(("pool", pool))
            shape = L.MaxPool2D(pool["pool_size"], pool["strides"],
                                pool["padding"]).compute_output_shape(shape)
    spec.append((["flatten", "flatten", "gap", "gmp"][rng.integers(4)], {}))
    if rng.random() < 0.5:
        spec.append(("bn", {}))
    spec.append(("dense", dict(units=int(rng.integers(2, 9)), activation="relu")))
    spec.append(("dropout", {}))
    spec.append(("dense", dict(units=4, activation=["softmax", None][rng.integers(2)])))
    return spec


def cnnumpy_model(spec, dtype="float32"):
    build = {"conv": lambda a: L.Conv2D(**a), "bn": lambda a: L.BatchNormalization(epsilon=1e-5),
             "pool": lambda a: (L.MaxPool2D if a["kind"] == "max" else L.AvgPool2D)(
                 a["pool_size"], a["strides"], a["padding"]),
             "flatten": lambda a: L.Flatten(), "gap": lambda a: L.GlobalAvgPool2D(),
             "gmp": lambda a: L.GlobalMaxPool2D(), "dropout": lambda a: L.Dropout(0.3),
             "dense": lambda a: L.Dense(**a)}
    model = cnnumpy.Sequential([build[kind](args) for kind, args in spec[1:]], dtype=dtype)
    model.build(spec[0][1])
    return model


class SumPool(nn.Module):
    """Reference average pool over zero-padded images dividing by the real element count."""

    def __init__(self, k, s, pads):
        super().__init__()
        self.k, self.s, self.pads = k, s, pads

    def forward(self, x):
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        total = F.avg_pool2d(F.pad(x, self.pads), self.k, self.s, divisor_override=1)
        return total / F.avg_pool2d(ones, self.k, self.s, divisor_override=1)


def torch_twin(spec):
    """The same architecture written directly in PyTorch (NCHW), with its default init."""
    shape, modules, image = spec[0][1], [], True
    for kind, a in spec[1:]:
        if kind == "conv":
            conv = L.Conv2D(**{**a, "activation": None})
            (top, bottom), (left, right) = resolve_padding(
                a["padding"], shape[:2], a["kernel_size"], a["strides"], a["dilation_rate"])
            modules += [nn.ZeroPad2d((left, right, top, bottom)),
                        nn.Conv2d(shape[2], a["filters"], a["kernel_size"], a["strides"],
                                  dilation=a["dilation_rate"], groups=a["groups"],
                                  bias=a["use_bias"])]
            shape = conv.compute_output_shape(shape)
        elif kind == "pool":
            k, s = a["pool_size"], a["strides"]
            (top, bottom), (left, right) = (
                same_pads(n, k, s) if a["padding"] == "same" else (0, 0) for n in shape[:2])
            pads = (left, right, top, bottom)
            pool = nn.MaxPool2d(k, s) if a["kind"] == "max" else SumPool(k, s, pads)
            modules += [nn.ConstantPad2d(pads, float("-inf") if a["kind"] == "max" else 0.0),
                        pool]
            shape = L.MaxPool2D(k, s, a["padding"]).compute_output_shape(shape)
        elif kind == "bn":
            modules.append((nn.BatchNorm2d if image else nn.BatchNorm1d)(
                shape[-1] if image else int(np.prod(shape))))
        elif kind in ("flatten", "gap", "gmp"):
            pool = {"gap": nn.AdaptiveAvgPool2d(1), "gmp": nn.AdaptiveMaxPool2d(1)}.get(kind)
            modules += [pool or nn.Identity(), nn.Flatten()]
            shape, image = (int(np.prod(shape)) if kind == "flatten" else shape[2],), False
        elif kind == "dense":
            modules.append(nn.Linear(shape[0], a["units"]))
            shape = (a["units"],)
        else:
            modules.append(nn.Dropout(0.3))
        act = a.get("activation")
        if act == "softmax":
            modules.append(nn.Softmax(dim=1))
        elif act is not None:
            modules.append(TORCH_ACTIVATIONS[act]())
    return nn.Sequential(*modules)


def randomize(net, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                for t in (m.weight, m.bias, m.running_mean):
                    t.uniform_(-1.5, 1.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def run_torch(net, x):
    with torch.no_grad():
        return net(nchw(x)).numpy()


def inputs(spec, n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *spec[0][1])).astype(np.float32)


@pytest.mark.parametrize("seed", range(16))
def test_random_architectures_from_torch(seed):
    spec = random_spec(seed)
    net = randomize(torch_twin(spec), seed)
    model = from_torch(net, cnnumpy_model(spec))
    x = inputs(spec)
    np.testing.assert_allclose(model.predict(x), run_torch(net, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(16))
def test_random_architectures_to_torch(seed):
    spec = random_spec(seed)
    cnnumpy.set_seed(seed)
    model = cnnumpy_model(spec)
    from_torch(randomize(torch_twin(spec), seed).state_dict(), model)  # non-trivial BN stats
    x = inputs(spec)
    np.testing.assert_allclose(run_torch(to_torch(model), x), model.predict(x), rtol=0,
                               atol=1e-5)
    back = from_torch(to_torch(model), cnnumpy_model(spec))  # and the round trip is exact
    for a, b in zip(model.layers, back.layers, strict=True):
        for key, value in a.get_weights().items():
            np.testing.assert_array_equal(b.get_weights()[key], value)


@pytest.mark.parametrize("seed", [1, 2])
def test_float64_round_trip_to_1e_10(seed):
    spec = random_spec(seed)
    cnnumpy.set_seed(seed)
    model = cnnumpy_model(spec, dtype="float64")
    net = to_torch(model)
    assert next(net.parameters()).dtype == torch.float64
    x = inputs(spec).astype(np.float64)
    np.testing.assert_allclose(run_torch(net, x), model.predict(x), rtol=0, atol=1e-10)


def image_model(**bn):
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([
        L.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 3)),
        L.BatchNormalization(**bn), L.Dense(5), L.RandomCrop(6, 6), L.MaxPool2D(2),
        L.Flatten(), L.Dense(3, activation="softmax")])
    model.build()
    return model


def test_dense_on_channels_crop_and_momentum():
    model = image_model(momentum=0.9, epsilon=1e-5)
    net = to_torch(model)
    assert net[2].momentum == pytest.approx(0.1) and net[2].eps == 1e-5
    assert isinstance(net[3], nn.Conv2d) and net[3].kernel_size == (1, 1)
    x = inputs([("input", (8, 8, 3))])
    np.testing.assert_allclose(run_torch(net, x), model.predict(x), rtol=0, atol=1e-5)


def test_augmentation_layers_export_as_identities():
    cnnumpy.set_seed(0)
    model = models.with_augmentation(cnnumpy.Sequential([
        L.Conv2D(2, 3, activation="relu", input_shape=(8, 8, 3)), L.Flatten(), L.Dense(3)]),
        erase=True)
    model.build()
    net = to_torch(model)
    assert [type(m) for m in net[:3]] == [nn.Identity] * 3
    x = inputs([("input", (8, 8, 3))])
    np.testing.assert_allclose(run_torch(net, x), model.predict(x), rtol=0, atol=1e-5)


def test_state_dict_files(tmp_path):
    from safetensors.torch import save_file

    net = randomize(to_torch(image_model(epsilon=1e-5)), 3)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(net.state_dict(), str(tmp_path / "w.pt"))
    x = inputs([("input", (8, 8, 3))])
    for name in ("w.safetensors", "w.pt"):
        model = from_torch(str(tmp_path / name), image_model(epsilon=1e-5))
        np.testing.assert_allclose(model.predict(x), run_torch(net, x), rtol=0, atol=1e-5)
    torch.save(net, str(tmp_path / "pickled.pt"))  # a whole pickled module is refused
    with pytest.raises(ValueError, match="weights_only"):
        from_torch(str(tmp_path / "pickled.pt"), image_model())
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        from_torch(42, image_model())


def test_mismatches_are_listed_together_and_nothing_is_loaded():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), nn.ReLU(),
                        nn.BatchNorm2d(4, eps=1e-3), nn.Linear(4, 5), nn.Flatten(),
                        nn.Linear(80, 7), nn.Linear(7, 3))
    model = image_model(epsilon=1e-5)
    before = [dict(layer.get_weights()) for layer in model.layers]
    with pytest.raises(ValueError) as info:
        from_torch(net, model)
    message = str(info.value)
    for part in ("stride (2, 2) differs", "eps=0.001 but epsilon=1e-05",
                 "BatchNormalization(epsilon=0.001)", "'3' (Linear): expected a Conv2d",
                 "'weight' has shape (7, 80), expected (3, 45)",
                 "the model has 4 layers with weights"):
        assert part in message, message
    sd = net.state_dict()
    sd["0.weight"] = sd["0.weight"][:2]
    del sd["0.bias"]
    with pytest.raises(ValueError) as info:
        from_torch(sd, model)
    assert "'weight' has shape (2, 3, 3, 3), expected (4, 3, 3, 3)" in str(info.value)
    assert "missing 'bias'" in str(info.value)
    for layer, weights in zip(model.layers, before, strict=True):
        for key, value in weights.items():
            np.testing.assert_array_equal(layer.get_weights()[key], value)


def test_layers_without_a_pytorch_twin_are_named():
    model = cnnumpy.Sequential([L.BatchNormalization(input_shape=(5, 4))])
    model.build()
    with pytest.raises(ValueError, match="BatchNormalization 'batch_normalization.*"):
        to_torch(model)
    with pytest.raises(ValueError, match="not built"):
        to_torch(cnnumpy.Sequential([L.Dense(2)]))


def train_lenet_in_torch(x_train, y_train):
    """One epoch of Adam, batch 64, on one thread (several times faster than two on a busy
    2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(400, 64), nn.ReLU(), nn.Linear(64, 10))
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        x, y = nchw(x_train), torch.from_numpy(y_train)
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def test_model_trained_in_torch_keeps_its_accuracy():
    from cnnumpy.datasets import load_mnist_sample

    (x_train, y_train), (x_test, y_test) = load_mnist_sample()  # real digits, in the package
    net = train_lenet_in_torch(x_train, y_train)
    torch_pred = run_torch(net, x_test).argmax(axis=1)
    model = cnnumpy.Sequential([
        L.Conv2D(8, 5, padding="same", input_shape=(28, 28, 1)),
        L.BatchNormalization(epsilon=1e-5), L.Activation("relu"), L.MaxPool2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPool2D(2), L.Flatten(),
        L.Dense(64, activation="relu"), L.Dense(10)])
    model.build()
    pred = from_torch(net, model).predict(x_test, batch_size=500).argmax(axis=1)
    torch_accuracy, accuracy = np.mean(torch_pred == y_test), np.mean(pred == y_test)
    assert torch_accuracy > 0.9
    assert np.mean(pred == torch_pred) >= 0.999
    assert abs(accuracy - torch_accuracy) <= 0.001


def test_a_model_built_at_construction_converts_before_any_training():
    """The first layer's input_shape builds the model: no batch is needed before from_torch."""
    def fresh():
        return cnnumpy.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 1)), L.Flatten(),
                                   L.Dense(3)])

    net = to_torch(fresh())
    model = from_torch(net.state_dict(), fresh())
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), run_torch(net, x), rtol=1e-5, atol=1e-5)
