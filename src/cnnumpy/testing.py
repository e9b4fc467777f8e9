"""Check a layer against the contract every cnnumpy layer keeps: ``check_layer``.

The library's own layers pass these checks in its test suite; your own subclass of
:class:`cnnumpy.layers.Layer` can run the same ones::

    from cnnumpy.testing import check_layer

    report = check_layer(MyLayer(), input_shape=(6, 6, 2))
    print(report)          # what was checked, what disagrees and by how much
    report.assert_ok()     # raises LayerCheckError (an AssertionError) if anything failed

The checks, each on a copy of the layer (yours is left as it was):

- ``output shape``: ``forward`` gives ``(batch, *compute_output_shape(input_shape))`` in the
  layer's dtype, and ``backward`` gives an input gradient shaped like the input and one
  gradient per param, shaped like it.
- ``config round trip``: ``from_config(get_config())`` rebuilds a layer with the same (JSON)
  config that, given the same weights, computes the same outputs.
- ``file round trip``: a one-layer ``Sequential`` saved and loaded predicts bit-identically.
- ``input gradient`` and ``gradient of 'NAME'`` for every param: ``backward`` against central
  finite differences, in float64.
- ``torch ...``, when ``torch_fn`` is given: the output and every gradient against PyTorch's
  autograd on the same input and weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy._testing_checks import config_check, file_check, shape_check
from cnnumpy._testing_grads import ATOL, EPS, RTOL, Check, compare, gradient_checks, numerical_grad
from cnnumpy.layers import Layer

CHECKS = ("shape", "config", "file", "gradients", "torch")


class LayerCheckError(AssertionError):
    """Raised by :meth:`LayerReport.assert_ok` when a check failed; its message is the report."""


@dataclass
class LayerReport:
    """What :func:`check_layer` checked, in order; ``str(report)`` reads as a table."""

    layer: str
    input_shape: tuple[int, ...]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; checks: {[c.name for c in self.checks]}")

    def __str__(self) -> str:
        shape = ", ".join(map(str, self.input_shape))
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"check_layer: {self.layer} on input (batch, {shape})"]
        lines += [f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}"
                  for c in self.checks]
        bad = len(self.failures)
        lines.append(f"{bad} of {len(self.checks)} checks failed." if bad
                     else f"all {len(self.checks)} checks passed.")
        return "\n".join(lines)

    __repr__ = __str__

    def assert_ok(self) -> None:
        """Raise :class:`LayerCheckError` with the whole report if any check failed."""
        if not self.ok:
            raise LayerCheckError(str(self))


# ----- the whole contract -----------------------------------------------------------------------
def check_layer(layer: Layer, input_shape: Any, *, torch_fn: Callable[..., Any] | None = None,
                training: bool = True, batch_size: int = 2, seed: int = 0,
                checks: Iterable[str] | None = None,
                max_elements: int | None = 1000) -> LayerReport:
    """Run the layer contract on copies of ``layer`` and return a :class:`LayerReport`.

    Args:
        layer: a layer (built or not); it is not changed.
        input_shape: per-sample input shape, e.g. ``(6, 6, 2)``.
        torch_fn: optional PyTorch reference, called as ``torch_fn(x, **params)`` with float64
            torch tensors in cnnumpy's layouts (``x`` is NHWC, a Conv2D ``kernel`` is
            ``(kh, kw, in, out)``); it returns the layer's output.
        training: run forward in training mode for the shape, gradient and torch checks.
        batch_size: images per test batch.
        seed: seeds the test inputs and the library's generator during the checks.
        checks: a subset of ``("shape", "config", "file", "gradients", "torch")``.
        max_elements: arrays larger than this get their gradient checked at this many random
            elements (None: every element).

    Returns:
        A report; ``report.ok`` tells whether all passed, ``report.assert_ok()`` raises.

    Example:
        >>> from cnnumpy import layers
        >>> check_layer(layers.Dense(3), (4,), checks=("shape", "config", "gradients")).ok
        True
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer: expected a cnnumpy.layers.Layer, received "
                        f"{type(layer).__name__}")
    shape = layer._split_batch(input_shape)[1]
    if layer.built and layer.input_shape != shape:
        raise ValueError(f"check_layer: {layer.label} is built for input {layer.input_shape}, "
                         f"received input_shape={tuple(input_shape)}")
    wanted = set(CHECKS if checks is None else checks)
    if wanted - set(CHECKS):
        raise ValueError(f"check_layer: unknown checks {sorted(wanted - set(CHECKS))}; "
                         f"expected some of {CHECKS}")
    if torch_fn is None:
        wanted.discard("torch")
    report = LayerReport(layer.label, shape)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *shape))
    saved = backend.rng_state()
    try:
        if "shape" in wanted:
            report.checks.append(_guard("output shape", shape_check, layer, x, training))
        if "config" in wanted:
            report.checks.append(_guard("config round trip", config_check, layer, x))
        if "file" in wanted:
            report.checks.append(_guard("file round trip", file_check, layer, x))
        if "gradients" in wanted:
            report.checks += _guard_many("gradients", lambda: gradient_checks(
                _float64_copy(layer), x.copy(), training, seed, max_elements))
        if "torch" in wanted and torch_fn is not None:  # "torch" is only wanted with one
            from cnnumpy._testing_torch import torch_checks

            report.checks += _guard_many("torch", lambda: torch_checks(
                _float64_copy(layer), x.copy(), torch_fn, training, seed))
    finally:
        backend.set_rng_state(saved)
    return report


def _guard(name: str, fn: Callable[..., str], *args: Any) -> Check:
    """Run one check; its AssertionError or any exception becomes a failed check."""
    try:
        return Check(name, True, fn(*args))
    except AssertionError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # the layer under test raised: report it, do not crash
        return Check(name, False, f"raised {type(exc).__name__}: {exc}")


def _guard_many(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as exc:
        return [Check(name, False, f"raised {type(exc).__name__}: {exc}")]


def _float64_copy(layer: Layer) -> Layer:
    clone = copy.deepcopy(layer)
    clone.dtype = np.dtype(np.float64)
    if clone.built:
        clone.set_weights(clone.get_weights())  # cast every array to float64
    return clone


__all__ = ["check_layer", "LayerReport", "Check", "LayerCheckError", "gradient_checks",
           "numerical_grad", "compare", "EPS", "ATOL", "RTOL"]
