"""PyTorch parity for :func:`cnnumpy.testing.check_layer` (torch is imported only here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy._testing_grads import Check, compare
from cnnumpy.layers import Layer

ATOL = 1e-8
RTOL = 1e-6


def torch_checks(layer: Layer, x: np.ndarray, torch_fn: Callable[..., Any], training: bool,
                 seed: int) -> list[Check]:
    """Compare the layer's output and gradients with ``torch_fn(x, **params)`` under autograd.

    Both sides see the same float64 input and weights, and the same random output weighting
    ``r`` for the backward pass (the scalar is ``sum(y * r)``).

    Shape:
        x: (batch, *layer.input_shape), float64.
    """
    try:
        import torch
    except ImportError:
        return [Check("torch", False, "torch_fn was given but torch is not installed "
                                      "(pip install torch)")]
    if not layer.built:
        layer.build(x.shape[1:])
    backend.set_seed(seed)
    y = np.asarray(layer.forward(x, training=training))
    r = np.random.default_rng(1234).standard_normal(y.shape)
    dx = np.asarray(layer.backward(r.copy()))
    xt = torch.tensor(x, requires_grad=True)
    pt = {k: torch.tensor(np.asarray(v, np.float64), requires_grad=True)
          for k, v in layer.params.items()}
    yt = torch_fn(xt, **pt)
    checks = [compare("torch output", y, yt.detach().numpy(), atol=ATOL, rtol=RTOL,
                      got_name="cnnumpy", want_name="torch")]
    if tuple(yt.shape) != y.shape:
        return checks
    (yt * torch.tensor(r)).sum().backward()
    named = {"input": (dx, xt)}
    named.update({repr(k): (layer.grads[k], pt[k]) for k in layer.params})
    for name, (ours, ref) in named.items():
        theirs = np.zeros(ref.shape) if ref.grad is None else ref.grad.numpy()
        checks.append(compare(f"torch gradient of {name}", ours, theirs, atol=ATOL, rtol=RTOL,
                              got_name="cnnumpy", want_name="torch"))
    return checks
