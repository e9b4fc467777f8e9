"""The compiled Adam step against ``adam_update``'s NumPy arithmetic: the same bits, for every
weight decay mode and dtype, over several steps; and the cases that stay in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy.functional.fast import compiled, compiled_adam
from cnnumpy.optimizers.adam import adam_update

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")

SHAPES = [(3, 3, 2, 4), (7,), (1000,), (33, 5)]


def tensors(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    return params, grads, [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]


def run_steps(monkeypatch, enabled, dtype, steps=4, **kwargs):
    monkeypatch.setattr(compiled, "ENABLED", enabled)
    params, grads, m, v = tensors(dtype)
    for step in range(1, steps + 1):
        adam_update(params, grads, m, v, step=step, lr=1e-2 * step, beta1=0.9, beta2=0.999,
                    eps=1e-7, **kwargs)
        grads = [g * np.asarray(-0.7, dtype) + np.asarray(0.01, dtype) for g in grads]
    return params + m + v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.05, True), (0.05, False)])
def test_equals_numpy_to_the_bit(monkeypatch, dtype, weight_decay, decoupled):
    got = run_steps(monkeypatch, True, dtype, weight_decay=weight_decay, decoupled=decoupled)
    want = run_steps(monkeypatch, False, dtype, weight_decay=weight_decay, decoupled=decoupled)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_the_library_runs_it_where_it_applies(monkeypatch):
    calls = []
    real = compiled_adam.update
    monkeypatch.setattr(compiled_adam, "update", lambda *a, **k: (calls.append(1), real(*a, **k)))
    params, grads, m, v = tensors(np.float32)
    adam_update(params, grads, m, v, step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-7,
                weight_decay=0.0, decoupled=False)
    assert len(calls) == len(SHAPES)
    calls.clear()  # AMSGrad, a non-contiguous parameter, mixed dtypes: NumPy
    adam_update(params, grads, m, v, step=2, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-7,
                weight_decay=0.0, decoupled=False, max_exp_avg_sqs=[np.zeros_like(p)
                                                                    for p in params])
    assert not calls
    assert not compiled_adam.applies(np.zeros((4, 4))[:, ::2], *[np.zeros((4, 2))] * 3)
    assert not compiled_adam.applies(np.zeros(3, np.float32), *[np.zeros(3)] * 3)
    monkeypatch.setattr(compiled, "ENABLED", False)
    assert not compiled_adam.applies(*[np.zeros(3)] * 4)
