"""Adam's update of one parameter in one compiled pass over its elements.

:func:`cnnumpy.optimizers.adam.adam_update` makes about ten NumPy passes over each parameter
(the moments, the square root, the division, each its own whole-array step); this loop reads
each element of the parameter, its gradient and its two moments once and writes the
parameter and the moments once, vectorized (compiled with NumPy's float errors:
:func:`cnnumpy.functional.fast.compiled.jit_numpy_errors`). It makes the same float
operations in the same order, each rounded to the parameters' dtype (NumPy casts a Python
float to the array's dtype before each step, so the constants are cast here first), and so
gives the same bits. Paired training steps at batch 32 against NumPy's passes (both orders):
the prototype's model 1.02-1.06x, LeNet-like 1.03x, ResNet-20 1.03-1.06x, MobileNetV2
0.99-1.01x.

Must equal: the NumPy arithmetic of :func:`cnnumpy.optimizers.adam.adam_update` without
AMSGrad (which stays in NumPy), to the bit. Checked by
``tests/functional/fast/test_compiled_adam.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional.fast import compiled

NO_DECAY, DECOUPLED, L2 = 0, 1, 2
"""How weight decay enters: not at all, ``p *= 1 - lr * wd`` first (AdamW), or
``g = g + wd * p`` (Adam's L2 penalty)."""


@compiled.jit_numpy_errors
def _adam(p, g, m, v, mode, decay, c1, c2, beta2, bias2_sqrt, eps,
          step_size):  # pragma: no cover (compiled)
    for i in range(p.shape[0]):
        pi, gi = p[i], g[i]
        if mode == 1:
            pi = pi * decay
        elif mode == 2:
            gi = gi + decay * pi
        mi = m[i] + (gi - m[i]) * c1
        vi = v[i] * beta2 + (gi * gi) * c2
        m[i] = mi
        v[i] = vi
        p[i] = pi - (mi / (np.sqrt(vi) / bias2_sqrt + eps)) * step_size


def applies(*arrays: Any) -> bool:
    """Whether :func:`update` may run on these arrays: compiled kernels on, one float dtype,
    all C-contiguous."""
    return compiled.usable(*arrays) and len({a.dtype for a in arrays}) == 1 \
        and all(a.flags.c_contiguous for a in arrays)


def update(p: Any, g: Any, m: Any, v: Any, *, mode: int, decay: float, beta1: float,
           beta2: float, bias2_sqrt: float, eps: float, step_size: float) -> None:
    """One Adam step of one parameter, in place: ``p``, ``m`` and ``v`` change.

    ``decay`` is ``1 - lr * weight_decay`` for :data:`DECOUPLED`, ``weight_decay`` for
    :data:`L2` (unused otherwise); the other constants as in ``adam_update``.

    Shape:
        p, g, m, v: the same shape, C-contiguous, one float dtype.
    """
    t = p.dtype.type
    _adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), mode, t(decay),
          t(1 - beta1), t(1 - beta2), t(beta2), t(bias2_sqrt), t(eps), t(step_size))
