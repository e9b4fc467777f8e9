"""Gradient checks of :func:`cnnumpy.testing.check_layer`: comparing arrays and finite differences.

``compare`` measures how far one array is from another; ``numerical_grad`` takes central
differences; ``gradient_checks`` checks a layer's ``backward`` against them, for the input and
every param. All are public from :mod:`cnnumpy.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.layers import Layer

EPS = 1e-6
ATOL = 1e-5
RTOL = 1e-3

@dataclass
class Check:
    """One check's outcome: its name, whether it passed, what was seen, the largest error."""

    name: str
    ok: bool
    detail: str
    error: float | None = None


# ----- comparing arrays ---------------------------------------------------------------------
def compare(name: str, got: Any, want: Any, *, atol: float = ATOL, rtol: float = RTOL,
            got_name: str = "backward", want_name: str = "finite differences") -> Check:
    """Compare ``got`` with ``want`` elementwise: ``|got - want| <= atol + rtol * |want|``.

    The check's ``error`` is the largest absolute difference; its detail names the worst
    element, both values there and how many elements are off.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return Check(name, False, f"{got_name} gave shape {got.shape}, "
                                  f"{want_name} {want.shape}", float("inf"))
    if got.size == 0:
        return Check(name, True, "no elements", 0.0)
    err = np.abs(got - want)
    err = np.where(np.isnan(err), np.inf, err)
    bad = err > atol + rtol * np.abs(want)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    where = f"[{', '.join(map(str, worst))}]"
    detail = (f"max abs error {err[worst]:.2g} at {where}: {got_name} {got[worst]:.6g}, "
              f"{want_name} {want[worst]:.6g}")
    if bad.any():
        detail += f" ({int(bad.sum())} of {bad.size} elements off; tolerance {atol:g} + {rtol:g}"\
                  f"*|{want_name}|)"
    return Check(name, not bad.any(), detail, float(err[worst]))


def numerical_grad(f: Callable[[], float], x: np.ndarray, eps: float = EPS,
                   indices: Iterable[int] | None = None) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to ``x``.

    ``x`` is perturbed in place, one element at a time, and restored. With ``indices`` (flat
    positions), only those elements are perturbed and the gradient is returned for them only.

    Shape:
        x: any -> the shape of ``x`` (or ``(len(indices),)``).
    """
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError(f"numerical_grad: x must be contiguous to be perturbed in place, "
                         f"received strides {x.strides}")
    positions = range(flat.size) if indices is None else list(indices)
    out = np.zeros(len(positions), dtype=np.float64)
    for j, i in enumerate(positions):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        out[j] = (plus - minus) / (2 * eps)
    return out.reshape(x.shape) if indices is None else out


def gradient_checks(layer: Layer, x: np.ndarray, training: bool = False, seed: int = 0,
                    max_elements: int | None = None) -> list[Check]:
    """Check ``layer.backward`` against central differences, for the input and every param.

    The scalar is ``sum(forward(x) * r)`` for a fixed random ``r``, so every output element
    contributes with its own weight. The library's generator is reseeded before each forward
    pass (and restored afterwards), so layers that draw random numbers (Dropout) see the same
    draws every time. With ``max_elements``, larger arrays are checked at that many random
    elements.

    Shape:
        x: ``(batch, *layer.input_shape)``, float64, like the layer's dtype.
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient_checks: gradient checks run in float64, received "
                        f"x of dtype {x.dtype.name!r}")
    saved = backend.rng_state()

    def run() -> np.ndarray:
        backend.set_seed(seed)
        return layer.forward(x, training=training)

    try:
        y = run()
        r = np.random.default_rng(1234).standard_normal(y.shape)

        def loss() -> float:
            return float(np.sum(run() * r))

        run()
        dx = np.asarray(layer.backward(r.copy()))
        grads = {k: np.array(v) for k, v in layer.grads.items()}
        checks = [_fd_check("input gradient", dx, x, loss, max_elements)]
        for name, param in layer.params.items():
            if name not in grads or grads[name] is None:
                checks.append(Check(f"gradient of {name!r}", False,
                                    f"backward left no grads[{name!r}]"))
                continue
            checks.append(_fd_check(f"gradient of {name!r}", grads[name], param, loss,
                                    max_elements))
        return checks
    finally:
        backend.set_rng_state(saved)


def _fd_check(name: str, analytic: np.ndarray, x: np.ndarray, loss: Callable[[], float],
              max_elements: int | None) -> Check:
    if analytic.shape != x.shape:
        return Check(name, False, f"backward gave shape {analytic.shape}, expected {x.shape}",
                     float("inf"))
    if max_elements is None or x.size <= max_elements:
        return compare(name, analytic, numerical_grad(loss, x))
    picked = np.sort(np.random.default_rng(99).choice(x.size, max_elements, replace=False))
    check = compare(name, analytic.reshape(-1)[picked], numerical_grad(loss, x, indices=picked))
    check.detail = f"{check.detail} [{max_elements} of {x.size} elements sampled]"
    return check
