"""A residual sum and the ReLU after it in one pass, and their gradient in one pass.

A residual block ends with ``relu(branch + shortcut)``; run as two layers that is one pass
for the sum, one for the ReLU and a cached copy of the sum. Here the sum and the ReLU write
the output once (into an input's buffer when the caller owns it). Backward, the gradients
that reach the output from its consumers are added, masked where the output is not
positive, and written once per input of the sum (each input gets its own array), where
separately the sum, the mask and the copies were four passes.

Each function equals the NumPy lines its docstring gives (``np.maximum`` keeps NaN; ``dy *
(y > 0)`` makes NaN of NaN); the compiled loops of :mod:`cnnumpy.functional.fast.compiled`
run where they apply, on one slice of the values per thread. Checked by
``tests/functional/fast/test_add_relu.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled

PARALLEL_MIN = 2**17
"""Arrays with fewer values run in one piece, on the calling thread."""


@compiled.jit
def _add_relu(a, b, out):  # pragma: no cover (compiled)
    for i in range(a.shape[0]):
        v = a[i] + b[i]
        out[i] = v if v > 0 else (v if v != v else 0)  # np.maximum keeps NaN


@compiled.jit
def _sum_relu_grad(g0, g1, two, y, out0, out1, copies):  # pragma: no cover (compiled)
    for i in range(y.shape[0]):
        g = g0[i] + g1[i] if two else g0[i]
        g = g if y[i] > 0 else g * 0  # as dy * (y > 0): NaN * 0 is NaN
        out0[i] = g
        if copies:
            out1[i] = g


def _parts(size: int) -> list[slice]:
    count = backend.get_num_threads() if size >= PARALLEL_MIN else 1
    return backend.batch_slices(size, max(1, min(count, size)))


def _flat(a: Any) -> Any:
    return a.reshape(-1)


def _compiles(*arrays: Any) -> bool:
    return (compiled.usable(*arrays) and all(a.flags.c_contiguous for a in arrays)
            and len({a.dtype for a in arrays}) == 1 and len({a.shape for a in arrays}) == 1)


def forward(xs: list[Any], out: Any | None = None) -> Any:
    """``max(xs[0] + xs[1] + ..., 0)``, written into ``out`` (which may be one of ``xs``)
    or a new array.

    Shape:
        every x, out: the same shape.
    """
    if out is None:
        out = xp.empty_like(xs[0])
    if len(xs) == 2 and _compiles(xs[0], xs[1], out):
        a, b, o = _flat(xs[0]), _flat(xs[1]), _flat(out)
        backend.parallel_map(lambda p: _add_relu(a[p], b[p], o[p]), _parts(o.size))
        return out
    xp.add(xs[0], xs[1], out=out)
    for x in xs[2:]:
        out += x
    xp.maximum(out, 0, out=out)
    return out


def backward(grads: list[Any], y: Any, count: int) -> list[Any]:
    """``g = (grads[0] + grads[1] + ...) * (y > 0)``, as ``count`` arrays of their own
    (the gradients of the sum's ``count`` inputs); ``y`` is :func:`forward`'s output.

    Shape:
        every grad, y and output: the same shape.
    """
    outs = [np.empty_like(y) for _ in range(count)]
    if len(grads) <= 2 and count <= 2 and _compiles(*grads, y):
        g0, g1, yf = _flat(grads[0]), _flat(grads[-1]), _flat(y)
        o0, o1 = _flat(outs[0]), _flat(outs[-1])
        backend.parallel_map(lambda p: _sum_relu_grad(
            g0[p], g1[p], len(grads) == 2, yf[p], o0[p], o1[p], count == 2), _parts(y.size))
        return outs
    g = grads[0]
    for d in grads[1:]:
        g = g + d
    g = g * (y > 0)
    for o in outs:
        o[...] = g
    return outs
