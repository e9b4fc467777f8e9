"""Compiled max pooling of stacked window blocks, and its window gradients, in one pass each.

A convolution before max pooling computes, for each window offset ``k``, a block of
outputs (one per pooling window); the pooling is then the elementwise maximum of the blocks
and, in training, the offset of each maximum. NumPy's version (:func:`pooling.max_of`) makes
four passes per block after the first (compare, maximum, index arithmetic) and holds the
interpreter lock between them, so the library's two threads, each pooling its own chunk of
images, wait for each other. These kernels make one pass over the blocks, with the loop over
a block's elements innermost (so that it vectorizes; an inner loop over the offsets of one
element did not, which is why an earlier attempt ran 3-15x slower than NumPy), without the
lock. The prototype's first layer's blocks (4 x 8 x 2,704 float32, one thread): 13 us
against NumPy's 35; its window gradients 8 us against 37.

Must equal: :func:`cnnumpy.functional.pooling.max_of` (NaN propagated the same way, ties
kept at the earlier offset) and :func:`cnnumpy.functional.pooling.window_grads`, to the bit.
Checked by ``tests/functional/fast/test_compiled_pool.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy.functional import pooling
from cnnumpy.functional.fast import compiled


@compiled.jit
def _max_first(blocks, out, first):  # pragma: no cover (compiled)
    windows, size = blocks.shape
    keep = first.shape[0] > 0
    for j in range(size):
        out[j] = blocks[0, j]
    if keep:
        for j in range(size):
            first[j] = 0
    for k in range(1, windows):
        for j in range(size):
            v = blocks[k, j]
            o = out[j]
            greater = v > o  # strictly: ties keep the earlier offset
            out[j] = v if (greater or v != v) else o  # as np.maximum: NaN wins
            if keep:
                first[j] = k if greater else first[j]


@compiled.jit
def _window_grads(dy, first, blocks):  # pragma: no cover (compiled)
    for k in range(blocks.shape[0]):
        for j in range(dy.shape[0]):
            blocks[k, j] = dy[j] if first[j] == k else dy[j] * 0  # as dy * hit: NaN * 0 is NaN


_NO_INDEX = np.empty(0, dtype=np.uint8)  # for inference: no offsets kept


def _flat(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.flags.c_contiguous


def max_of(blocks: Any, out: Any, first: Any | None = None) -> None:
    """:func:`cnnumpy.functional.pooling.max_of` of ``blocks[0], blocks[1], ...``, in one
    compiled pass where it applies (every array C-contiguous, ``blocks`` one array).

    Shape:
        blocks: (windows, ...); out and first: blocks.shape[1:].
    """
    if (compiled.usable(blocks, out) and _flat(blocks) and _flat(out)
            and out.dtype == blocks.dtype and (first is None or _flat(first))):
        index = _NO_INDEX if first is None else first.reshape(-1)
        _max_first(blocks.reshape(len(blocks), -1), out.reshape(-1), index)
        return
    pooling.max_of(list(blocks), out, first)


def window_grads(dy: Any, first: Any, windows: int) -> Any:
    """:func:`cnnumpy.functional.pooling.window_grads`, in one compiled pass where it applies.

    Shape:
        dy, first: (...) -> (windows, ...).
    """
    if not (compiled.usable(dy) and _flat(dy) and _flat(first)):
        return pooling.window_grads(dy, first, windows)
    blocks = np.empty((windows, *dy.shape), dtype=dy.dtype)
    _window_grads(dy.reshape(-1), first.reshape(-1), blocks.reshape(windows, -1))
    return blocks
