"""Elementwise steps of a convolution done in one pass: its bias and ReLU, a ReLU's gradient.

Each function here equals a line of NumPy (given in its docstring) and runs the compiled loop
of :mod:`cnnumpy.functional.fast.compiled` where that applies, the NumPy line otherwise.
Reference: :func:`cnnumpy.functional.activations.relu` and
:func:`cnnumpy.functional.activations.relu_backward`; checked by
``tests/functional/fast/test_compiled.py`` (``test_bias_relu_equals_numpy``,
``test_relu_grad_equals_numpy``, ``test_convolution_with_relu_matches_numpy``).
"""

from __future__ import annotations

from typing import Any

from cnnumpy.backend import xp
from cnnumpy.functional.fast import compiled


def add_bias_relu(out: Any, bias: Any | None, relu: bool) -> None:
    """In place: ``out += bias`` (if given), then ``out = max(out, 0)`` (if ``relu``); one
    compiled pass where the compiled kernels apply.

    Shape:
        out: (..., F); bias: (F,).
    """
    if bias is None and not relu:
        return
    if compiled.usable(out) and out.ndim and out.flags.c_contiguous:
        compiled.bias_relu(out.reshape(-1, out.shape[-1]), bias, relu)
        return
    if bias is not None:
        out += bias
    if relu:
        xp.maximum(out, 0, out=out)


def relu_grad_of_output(dy: Any, y: Any) -> Any:
    """``dy * (y > 0)``: the gradient through a ReLU whose output was ``y``; one compiled
    pass where the compiled kernels apply.

    Shape:
        dy, y: the same shape.
    """
    if compiled.usable(dy, y) and dy.ndim and dy.shape == y.shape:
        f = dy.shape[-1]
        return compiled.relu_grad(dy.reshape(-1, f), y.reshape(-1, f)).reshape(dy.shape)
    return dy * (y > 0)
