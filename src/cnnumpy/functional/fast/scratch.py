"""Scratch arrays, one set per thread: the chunks' transformed arrays of the Winograd paths
(:mod:`cnnumpy.functional.fast.winograd_conv`, :mod:`cnnumpy.functional.fast.conv_pool`).

They are a few MiB each and made for every chunk of every convolution; fresh ones cost a page
fault per page touched (two threads' forward passes ran 15-20 % slower allocating them; a
convolution with 2x2 max pooling at 32x32x32, batch 128, 29 against 59 ms where another
framework's steps ran between its calls and the allocator had given the memory back). A
scratch array holds nothing from one use to the next: a caller must not keep it (or a view
of it) past its chunk.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from cnnumpy.backend import xp

_local = threading.local()


def array(name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """A view of this thread's flat array ``name`` (grown when too small) as ``shape``, its
    contents undefined."""
    arrays = _local.__dict__.setdefault("arrays", {})
    size = math.prod(shape)
    flat = arrays.get((name, xp.dtype(dtype)))
    if flat is None or flat.size < size:
        flat = arrays[name, xp.dtype(dtype)] = xp.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)
