"""Per-layer forward/backward times of a cnnumpy model (medians, milliseconds).

Each layer runs on its own, as the layer classes compute: without the rewrites that
``Sequential``'s passes make (a ReLU moved after max pooling, a convolution and the max
pooling after it computed together), so the step time above the table is the model's and the
per-layer times add up to more than it.

    python bench/profile_layers.py [--model lenet|cifar|small|resnet20|mobilenet] [--batch 64]
                                   [--repeats 20] [--threads 1,2]

For a graph model (``resnet20``, ``mobilenet``) each node runs on its own in the graph's order
(gradients of a tensor read by several nodes summed), and the table lists the slowest layers
(forward + backward) and the time per kind of layer.

With several thread counts (``cnnumpy.backend.set_num_threads``, which holds the BLAS to as
many) the rounds are interleaved, one of each in turn, each round starting where the other
count left the caches and the BLAS's threads: for the cleanest numbers compare thread counts
in separate processes (``--threads 2``, then ``--threads 1``) unless the machine is loaded
anyway. Every step and layer call runs
inside ``backend.single_threaded_blas()``, as a training step does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from models import build_cnnumpy

import cnnumpy
from cnnumpy import backend


def profile(model_name: str, batch: int, repeats: int, threads: list[int]) -> None:
    rng = np.random.default_rng(0)
    runs = {}
    for n in threads:
        cnnumpy.set_seed(0)
        model, shape, classes = build_cnnumpy(model_name)
        runs[n] = model, {"step": []}, {}
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    y = y.reshape(-1, 1).astype(np.float32) if classes == 2 else y
    for round_ in range(repeats + 1):  # round 0 warms up
        for n, (model, fwd, bwd) in runs.items():
            backend.set_num_threads(n)
            with backend.single_threaded_blas():
                times = _one_round(model, x, y)
            for key, seconds in times.items():  # "step", i: layer i forward, -1 - i: backward
                if round_:
                    (bwd if key != "step" and key < 0 else fwd).setdefault(key, []).append(seconds)
    backend.set_num_threads(None)
    med = lambda values: 1e3 * statistics.median(values)  # noqa: E731
    print(f"{model_name}, batch {batch}, threads {' / '.join(map(str, runs))} (ms)")
    print("  train step       " + " / ".join(f"{med(r[1]['step']):7.2f}" for r in runs.values()))
    if hasattr(runs[threads[0]][0], "_nodes"):
        _graph_table(runs, threads)
        return
    for i, layer in enumerate(runs[threads[0]][0].layers):
        print(f"  {layer.name:<16} fwd " + " / ".join(f"{med(r[1][i]):6.2f}" for r in runs.values())
              + "  bwd " + " / ".join(f"{med(r[2][-1 - i]):6.2f}" for r in runs.values()))


def _graph_table(runs: dict, threads: list[int], top: int = 15) -> None:
    """The slowest ``top`` layers and the total per kind of layer (forward + backward, ms)."""
    layers = runs[threads[0]][0].layers
    med = lambda values: 1e3 * statistics.median(values)  # noqa: E731
    rows = [(layer, [(med(r[1][i]), med(r[2][-1 - i])) for r in runs.values()])
            for i, layer in enumerate(layers)]
    total = [sum(t[k][0] + t[k][1] for _, t in rows) for k in range(len(runs))]
    print("  layers run one by one: " + " / ".join(f"{t:7.2f}" for t in total))
    kinds: dict[str, list] = {}
    for layer, t in rows:
        kind = kinds.setdefault(type(layer).__name__, [0, [0.0, 0.0] * len(runs)])
        kind[0] += 1
        for k, (f, b) in enumerate(t):
            kind[1][2 * k] += f
            kind[1][2 * k + 1] += b
    print("  per kind (count): fwd / bwd ms, share of the layers' time")
    for name, (count, t) in sorted(kinds.items(), key=lambda kv: -kv[1][1][0] - kv[1][1][1]):
        print(f"  {name + f' ({count})':<28} fwd {t[0]:7.2f}  bwd {t[1]:7.2f}  "
              f"{100 * (t[0] + t[1]) / total[0]:4.1f}%")
    print(f"  slowest {top} layers:")
    for layer, t in sorted(rows, key=lambda r: -sum(r[1][0]))[:top]:
        print(f"  {layer.name:<28} fwd " + " / ".join(f"{f:6.2f}" for f, _ in t)
              + "  bwd " + " / ".join(f"{b:6.2f}" for _, b in t))


def _one_round(model: Any, x: Any, y: Any) -> dict[str | int, float]:
    times = {}
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    times["step"] = time.perf_counter() - t0
    if hasattr(model, "_nodes"):
        return {**times, **_graph_round(model, x)}
    h = x
    for i, layer in enumerate(model.layers):
        t = time.perf_counter()
        h = layer.forward(h, training=True)
        times[i] = time.perf_counter() - t
    g = np.ones_like(h) / h.size
    for i, layer in reversed(list(enumerate(model.layers))):
        layer.needs_input_grad = i > 0
        t = time.perf_counter()
        g = layer.backward(g)
        times[-1 - i] = time.perf_counter() - t
    return times


def _graph_round(model: Any, x: Any) -> dict[int, float]:
    """Each node's layer forward (key i: its index in ``model.layers``) and backward (-1 - i),
    one at a time in the graph's order. Assumes every layer is called once (no sharing)."""
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    times: dict[int, float] = {}
    values = {id(model.input): x}
    for node in model._nodes[1:]:
        args = [values[id(t)] for t in node.inputs]
        t = time.perf_counter()
        values[id(node.output)] = node.layer.forward(args if len(args) > 1 else args[0],
                                                     training=True)
        times[index[id(node.layer)]] = time.perf_counter() - t
    out = values[id(model.output)]
    grads = {id(model.output): np.ones_like(out) / out.size}
    for node in model._nodes[:0:-1]:
        g = grads.pop(id(node.output))
        node.layer.needs_input_grad = True
        t = time.perf_counter()
        dx = node.layer.backward(g)
        times[-1 - index[id(node.layer)]] = time.perf_counter() - t
        for src, d in zip(node.inputs, dx if len(node.inputs) > 1 else [dx], strict=True):
            grads[id(src)] = d if id(src) not in grads else grads[id(src)] + d
    for i in range(len(model.layers)):
        if i not in times:  # the input layer
            times[i] = times[-1 - i] = 0.0
    return times


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", default=str(backend.get_num_threads()),
                        help="comma-separated thread counts to compare, e.g. 1,2")
    args = parser.parse_args()
    backend.keep_freed_memory()  # as cnnumpy train does
    profile(args.model, args.batch, args.repeats, [int(t) for t in args.threads.split(",")])
