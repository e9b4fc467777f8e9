"""The compiled depthwise convolution against the NumPy path it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy import backend
from cnnumpy.functional import conv
from cnnumpy.functional.fast import compiled, compiled_depthwise, compiled_depthwise_rows

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="Numba is not installed")

CASES = [  # x shape, kernel (kh, kw), strides, padding, dilation, bias, relu
    ((3, 8, 8, 16), (3, 3), (1, 1), "same", (1, 1), False, False),
    ((2, 8, 8, 5), (3, 3), (2, 2), "same", (1, 1), True, True),
    ((2, 9, 7, 4), (3, 3), (2, 2), "same", (1, 1), False, True),
    ((3, 7, 6, 3), (3, 3), (1, 1), 1, (1, 1), True, False),
    ((2, 9, 9, 2), (2, 3), (2, 1), ((1, 2), (0, 1)), (2, 1), True, True),
    ((2, 6, 6, 6), (5, 5), (1, 1), "valid", (1, 1), False, False),
    ((1, 3, 3, 4), (3, 3), (2, 2), ((2, 2), (2, 2)), (1, 1), True, False),
    ((2, 4, 100, 3), (3, 3), (1, 1), "same", (1, 1), True, True),  # rows of several spans
    ((2, 7, 9, 40), (3, 3), (1, 1), ((2, 0), (1, 3)), (2, 2), True, True),
    ((1, 5, 6, 300), (3, 1), (1, 1), "valid", (1, 1), False, True),  # a pixel per span
]


def arrays(case, dtype, seed=0):
    x_shape, (kh, kw), _, _, _, bias, _ = case
    rng = np.random.default_rng(seed)
    c = x_shape[3]
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((kh, kw, 1, c)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype) if bias else None
    return x, kernel, b


def run(x, kernel, b, case, need_dx=True):
    _, _, strides, padding, dilation, _, relu = case
    y, cache = conv.conv2d_forward(x, kernel, b, strides, padding, dilation,
                                   groups=x.shape[3], relu=relu)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    return (y, *conv.conv2d_backward(dy, cache, need_dx))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("need_dx", [True, False])
def test_equals_the_numpy_path(case, dtype, tol, need_dx, monkeypatch):
    x, kernel, b = arrays(case, dtype)
    calls = []
    for module, name in ((compiled_depthwise, "_forward"),
                         (compiled_depthwise_rows, "forward_rows")):
        fn = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, k=fn: calls.append(1) or k(*a))
    got = run(x, kernel, b, case, need_dx)
    assert calls, "the compiled kernel did not run"
    monkeypatch.setattr(compiled_depthwise, "ENABLED", False)
    want = run(x, kernel, b, case, need_dx)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
            continue
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_same_results_on_one_thread_and_on_several():
    case = CASES[1]
    x, kernel, b = arrays(case, np.float64)
    x = np.concatenate([x] * 4)
    backend.set_num_threads(1)
    try:
        one = run(x, kernel, b, case)
    finally:
        backend.set_num_threads(None)
    several = run(x, kernel, b, case)
    for a, c in zip(one, several, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-13)


def test_nan_passes_through_the_relu_as_in_numpy(monkeypatch):
    case = CASES[1]
    x, kernel, b = arrays(case, np.float32)
    x[0, 2, 3, 1] = np.nan
    got = run(x, kernel, b, case)
    monkeypatch.setattr(compiled_depthwise, "ENABLED", False)
    want = run(x, kernel, b, case)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(np.isnan(g), np.isnan(w))


def test_other_multipliers_and_mixed_dtypes_keep_the_numpy_path():
    x = np.zeros((1, 4, 4, 2), np.float32)
    assert compiled_depthwise.applies(x, np.zeros((3, 3, 1, 2), np.float32))
    assert not compiled_depthwise.applies(x, np.zeros((3, 3, 1, 4), np.float32))  # M = 2
    assert not compiled_depthwise.applies(x, np.zeros((3, 3, 1, 2), np.float64))


def test_stride_one_with_few_channels_runs_by_rows(monkeypatch):
    calls = []
    for name in ("forward_rows", "backward_rows"):
        fn = getattr(compiled_depthwise_rows, name)
        monkeypatch.setattr(compiled_depthwise_rows, name,
                            lambda *a, k=fn, n=name: calls.append(n) or k(*a))
    x, kernel, b = arrays(CASES[0], np.float32)  # stride 1, 16 channels
    run(x, kernel, b, CASES[0])
    assert {"forward_rows", "backward_rows"} <= set(calls)
    calls.clear()
    x, kernel, b = arrays(CASES[-1], np.float32)  # 300 channels: the per-pixel loops
    run(x, kernel, b, CASES[-1])
    assert not calls
