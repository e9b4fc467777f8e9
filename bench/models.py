"""The benchmark models, built identically in cnnumpy and in PyTorch.

* ``lenet``: 28x28x1, conv 5x5x32 same, max-pool, conv 5x5x64 same, max-pool, dense 128,
  dense 10 (softmax cross-entropy).
* ``cifar``: 32x32x3, conv 3x3x32 same (x2), max-pool, conv 3x3x64 same (x2), max-pool,
  dense 256, dense 10.
* ``small``: the prototype notebook's model: 28x28x1, conv 3x3x8 valid, max-pool,
  conv 3x3x16 valid, max-pool, dense 128, dense 1 (sigmoid, binary cross-entropy).

PyTorch is imported only inside :func:`build_torch`, so the cnnumpy side runs without it.
"""

from __future__ import annotations

from typing import Any

import cnnumpy
import cnnumpy.models
from cnnumpy import layers

# name: (input shape HWC, [(kind, args)], classes)
SPECS: dict[str, tuple[tuple[int, int, int], list[tuple], int]] = {
    "lenet": ((28, 28, 1), [("conv", 32, 5, "same"), ("pool",), ("conv", 64, 5, "same"),
                            ("pool",), ("flatten",), ("dense", 128), ("out", 10)], 10),
    "cifar": ((32, 32, 3), [("conv", 32, 3, "same"), ("conv", 32, 3, "same"), ("pool",),
                            ("conv", 64, 3, "same"), ("conv", 64, 3, "same"), ("pool",),
                            ("flatten",), ("dense", 256), ("out", 10)], 10),
    "small": ((28, 28, 1), [("conv", 8, 3, "valid"), ("pool",), ("conv", 16, 3, "valid"),
                            ("pool",), ("flatten",), ("dense", 128), ("out", 1)], 2),
}

GRAPHS: dict[str, tuple[tuple[int, int, int], int]] = {"resnet20": ((32, 32, 3), 10),
                                                      "mobilenet": ((32, 32, 3), 10)}
"""The graph models: name: (input shape HWC, classes)."""

MODELS = [*SPECS, *GRAPHS]


def shape_and_classes(name: str) -> tuple[tuple[int, int, int], int]:
    """The input shape (HWC) and class count of any benchmark model."""
    if name in GRAPHS:
        return GRAPHS[name]
    if name not in SPECS:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
    return SPECS[name][0], SPECS[name][2]


def _build_graph(name: str) -> Any:
    shape, classes = GRAPHS[name]
    if name == "resnet20":
        return cnnumpy.models.resnet(20, classes, shape)
    return cnnumpy.models.mobilenet_v2(0.35, classes, shape)


def build_cnnumpy(name: str, learning_rate: float = 1e-3,
                  dtype: str = "float32") -> tuple[Any, tuple, int]:
    """Return ``(compiled model, input shape, classes)``."""
    if name in GRAPHS:
        old = cnnumpy.floatx()
        cnnumpy.set_floatx(dtype)
        try:
            model = _build_graph(name)
        finally:
            cnnumpy.set_floatx(old)
        model.compile(cnnumpy.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                      metrics=[])
        shape, classes = GRAPHS[name]
        return model, shape, classes
    shape, spec, classes = SPECS[name]
    stack = []
    for item in spec:
        kind = item[0]
        first = {"input_shape": shape} if not stack else {}
        if kind == "conv":
            stack.append(layers.Conv2D(item[1], item[2], padding=item[3], activation="relu",
                                       **first))
        elif kind == "pool":
            stack.append(layers.MaxPool2D(2))
        elif kind == "flatten":
            stack.append(layers.Flatten())
        elif kind == "dense":
            stack.append(layers.Dense(item[1], activation="relu"))
        else:
            act = "sigmoid" if item[1] == 1 else "softmax"
            stack.append(layers.Dense(item[1], activation=act))
    model = cnnumpy.Sequential(stack)
    loss = "binary_crossentropy" if classes == 2 else "sparse_categorical_crossentropy"
    model.compile(cnnumpy.optimizers.Adam(learning_rate), loss, metrics=[])
    model.build(shape, dtype=dtype)
    return model, shape, classes


def build_torch(name: str, learning_rate: float = 1e-3) -> tuple[Any, Any, Any]:
    """Return ``(module, Adam optimizer, loss function)`` for the same model in PyTorch."""
    import torch
    from torch import nn

    if name in GRAPHS:
        import twins

        module = twins.resnet20(GRAPHS[name][1]) if name == "resnet20" else \
            twins.mobilenet_v2(0.35, GRAPHS[name][1])
        opt = torch.optim.Adam(module.parameters(), lr=learning_rate)
        return module, opt, nn.CrossEntropyLoss()
    shape, spec, classes = SPECS[name]
    h, w, c = shape
    mods: list = []
    for item in spec:
        kind = item[0]
        if kind == "conv":
            pad = item[2] // 2 if item[3] == "same" else 0
            mods += [nn.Conv2d(c, item[1], item[2], padding=pad), nn.ReLU()]
            c = item[1]
            h, w = (h, w) if item[3] == "same" else (h - item[2] + 1, w - item[2] + 1)
        elif kind == "pool":
            mods.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        elif kind == "flatten":
            mods.append(nn.Flatten())
            c = c * h * w
        else:
            mods.append(nn.Linear(c, item[1]))
            c = item[1]
            if kind == "dense":
                mods.append(nn.ReLU())
    module = nn.Sequential(*mods)
    opt = torch.optim.Adam(module.parameters(), lr=learning_rate)
    loss = nn.BCEWithLogitsLoss() if classes == 2 else nn.CrossEntropyLoss()
    return module, opt, loss


def forward_flops(name: str) -> float:
    """Multiply-adds x 2 of one image's forward pass (convolutions and dense layers)."""
    if name in GRAPHS:
        return graph_flops(_build_graph(name))
    shape, spec, _ = SPECS[name]
    h, w, c = shape
    flops = 0.0
    for item in spec:
        kind = item[0]
        if kind == "conv":
            k = item[2]
            if item[3] == "valid":
                h, w = h - k + 1, w - k + 1
            flops += 2.0 * h * w * k * k * c * item[1]
            c = item[1]
        elif kind == "pool":
            h, w = h // 2, w // 2
        elif kind == "flatten":
            c, h, w = c * h * w, 1, 1
        else:
            flops += 2.0 * c * item[1]
            c = item[1]
    return flops


def graph_flops(model: Any) -> float:
    """Multiply-adds x 2 of one image's forward pass through a built cnnumpy graph ``Model``:
    its convolutions (grouped and depthwise too) and dense layers."""
    flops = 0.0
    for layer in model.layers:
        kernel = layer.params.get("kernel") if layer.params else None
        if kernel is None:
            kernel = layer.params.get("depthwise_kernel") if layer.params else None
        if kernel is None:
            continue
        out = layer.compute_output_shape(layer.input_shape)
        positions = 1
        for size in out[:-1]:
            positions *= size
        flops += 2.0 * positions * kernel.size  # each output position uses every weight once
    return flops
