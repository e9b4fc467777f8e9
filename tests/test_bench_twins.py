"""The benchmark's PyTorch twins (bench/twins.py) equal cnnumpy's ResNet-20 and MobileNetV2:
the same parameter counts, and in float64 with the same weights (``from_torch``) the same
outputs, in inference and in training mode (batch statistics)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import models as bench_models  # noqa: E402

from cnnumpy.torch import from_torch  # noqa: E402


@pytest.mark.parametrize("name", sorted(bench_models.GRAPHS))
def test_twin_has_the_same_parameters_and_outputs(name):
    model, shape, classes = bench_models.build_cnnumpy(name, dtype="float64")
    torch.manual_seed(0)
    net, _, _ = bench_models.build_torch(name)
    net = net.double()
    trainable = sum(v.size for layer in model.layers for v in layer.params.values())
    assert sum(p.numel() for p in net.parameters()) == trainable
    for mod in net.modules():  # batch norms away from 1 and 0
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_var.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.3, 0.3)
            mod.running_mean.uniform_(-0.3, 0.3)
    from_torch(net.state_dict(), model)  # weights only (twins pad stride 2 by F.pad)
    x = np.random.default_rng(0).standard_normal((4, *shape))
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy())
    for training in (False, True):
        net.train(training)
        with torch.no_grad():
            expected = torch.softmax(net(xt), 1).numpy()
        got = model.forward(x, training=training)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
