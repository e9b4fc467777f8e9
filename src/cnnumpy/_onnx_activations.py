"""ONNX nodes of the activations (a layer's ``activation``), for :mod:`cnnumpy.onnx` (which
owns the graph under construction, ``g``; see its ``_Graph``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _gelu(g: Any, base: str) -> None:
    """0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), from primitives (opset < 20)."""
    x = g.x
    cube = g.op("Mul", [g.op("Mul", [x, x], base), x], base)
    inner = g.op("Add", [x, g.op("Mul", [cube, g.const(f"{base}/c", 0.044715)], base)], base)
    t = g.op("Tanh", [g.op("Mul", [inner, g.const(f"{base}/k", np.sqrt(2 / np.pi))], base)], base)
    half_x = g.op("Mul", [x, g.const(f"{base}/half", 0.5)], base)
    g.x = g.op("Mul", [half_x, g.op("Add", [t, g.const(f"{base}/one", 1.0)], base)], base)


def activation(g: Any, name: str, base: str) -> None:
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    if name in simple:
        g.apply(simple[name], base)
    elif name == "relu6":
        g.apply("Clip", base, g.const(f"{base}/min", 0.0), g.const(f"{base}/max", 6.0))
    elif name in ("swish", "silu"):
        g.x = g.op("Mul", [g.x, g.op("Sigmoid", [g.x], base)], base)
    elif name == "leaky_relu":
        g.apply("LeakyRelu", base, alpha=0.01)
    elif name == "elu":
        g.apply("Elu", base, alpha=1.0)
    elif name == "softmax":
        g.apply("Softmax", base, axis=1 if g.rank == 4 and g.layout == "NCHW" else -1)
    elif name == "gelu" and g.opset >= 20:
        g.apply("Gelu", base, approximate="tanh")
    elif name == "gelu":
        _gelu(g, f"{base}/gelu")
    else:  # pragma: no cover - the activation table and this function go together
        raise ValueError(f"cnnumpy.onnx: no ONNX mapping for activation {name!r} (in {base})")
