"""Per-layer forward/backward times of a cnnumpy model (medians, milliseconds).

    python bench/profile_layers.py [--model lenet|cifar|small] [--batch 64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from models import build_cnnumpy

import cnnumpy


def profile(model_name: str, batch: int, repeats: int) -> None:
    cnnumpy.set_seed(0)
    model, shape, classes = build_cnnumpy(model_name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    model.train_step(x, y)
    layers = model.layers
    fwd = {layer.name: [] for layer in layers}
    bwd = {layer.name: [] for layer in layers}
    steps = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.train_step(x, y)
        steps.append(time.perf_counter() - t0)
        h = x
        for layer in layers:
            t = time.perf_counter()
            h = layer.forward(h, training=True)
            fwd[layer.name].append(time.perf_counter() - t)
        g = np.ones_like(h) / h.size
        for i, layer in reversed(list(enumerate(layers))):
            layer.needs_input_grad = i > 0
            t = time.perf_counter()
            g = layer.backward(g)
            bwd[layer.name].append(time.perf_counter() - t)
    print(f"{model_name}, batch {batch}: train step {1e3 * statistics.median(steps):.1f} ms "
          f"({batch / statistics.median(steps):.0f} img/s)")
    for layer in layers:
        print(f"  {layer.name:<16} fwd {1e3 * statistics.median(fwd[layer.name]):7.2f}  "
              f"bwd {1e3 * statistics.median(bwd[layer.name]):7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    profile(args.model, args.batch, args.repeats)
