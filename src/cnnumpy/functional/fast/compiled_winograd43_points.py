"""The one-dimensional transforms of Winograd F(4x4, 3x3) on six (or four) values, compiled
(see :mod:`cnnumpy.functional.fast.compiled`): ``B^T``, ``B``, ``A^T`` and ``A`` of
:mod:`cnnumpy.functional.fast.winograd43`, applied along a tile's rows, then its columns, by
the kernels of :mod:`cnnumpy.functional.fast.compiled_winograd43` and
:mod:`cnnumpy.functional.fast.compiled_winograd43_rows`. The coefficients come in as arguments
of the values' dtype, so that float32 stays float32.
"""

from __future__ import annotations

from cnnumpy.functional.fast.compiled import jit as _jit


@_jit
def _bt(d0, d1, d2, d3, d4, d5, two, four, five):  # pragma: no cover (compiled)
    """``B^T`` applied to six values."""
    return (four * d0 - five * d2 + d4, d3 + d4 - four * (d1 + d2),
            four * (d1 - d2) - d3 + d4, two * (d3 - d1) - d2 + d4,
            two * (d1 - d3) - d2 + d4, four * d1 - five * d3 + d5)


@_jit
def _b(e0, e1, e2, e3, e4, e5, two, four, five):  # pragma: no cover (compiled)
    """``B`` applied to six values (the adjoint of :func:`_bt`)."""
    return (four * e0, four * (e2 - e1 + e5) + two * (e4 - e3),
            -five * e0 - four * (e1 + e2) - e3 - e4, e1 - e2 + two * (e3 - e4) - five * e5,
            e0 + e1 + e2 + e3 + e4, e5)


@_jit
def _at(m0, m1, m2, m3, m4, m5, two, four, eight):  # pragma: no cover (compiled)
    """``A^T`` applied to six values: four."""
    s, d = m1 + m2, m1 - m2
    s2, d2 = m3 + m4, m3 - m4
    return m0 + s + s2, d + two * d2, s + four * s2, d + eight * d2 + m5


@_jit
def _a(g0, g1, g2, g3, two, four, eight):  # pragma: no cover (compiled)
    """``A`` applied to four values: six (the adjoint of :func:`_at`)."""
    even, odd = g0 + g2, g1 + g3
    even4, odd4 = g0 + four * g2, two * g1 + eight * g3
    return g0, even + odd, even - odd, even4 + odd4, even4 - odd4, g3
