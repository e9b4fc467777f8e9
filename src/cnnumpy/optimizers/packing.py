"""An optimizer's slots packed into one array per slot name, so that an update is a few
operations on whole arrays instead of a dozen per parameter.

Every update here (SGD, Adam, RMSprop) is elementwise: the same arithmetic on each element of
each parameter. Run one parameter at a time it costs Python and NumPy dispatch per tensor
(ResNet-20 has 65 tensors, MobileNetV2 158: an Adam step of ~14 calls each took 1.3-1.4 ms
and 2.6-2.7 ms on 2 cores). With each slot of every parameter a view into one flat array,
:meth:`cnnumpy.optimizers.Optimizer.apply` gathers the parameters and gradients into one
flat array each (:func:`gather`), runs the algorithm's own update function once on the flat
arrays, and copies the parameters back (:func:`scatter`): the same operations on the same
elements, so the same results to the bit (checked by
``tests/optimizers/test_packing.py`` against updates one parameter at a time).

The state stays what it was: ``optimizer.state[i][name]`` is still an array of parameter
``i``'s shape (a view into the packed array). Anything that replaces one (``load_state_dict``,
user code) is noticed at the next update, whose :func:`packed` check fails, and the state
is packed again.

:func:`elementwise_groups` cuts such an update into one piece per thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from cnnumpy import backend
from cnnumpy.backend import xp

MEAN_SIZE = 2**13
"""Packing pays for parameters of at most this many elements on average: it saves a dozen
calls per tensor (~20 us) and costs three more passes over the elements (gathering the
parameters and gradients, copying the parameters back). Measured on 2 cores, paired training
steps at batch 32: ResNet-20 (4,191 elements a tensor) 1.8 % faster, MobileNetV2 (2,588)
2.5 %; the LeNet-like model (56,865) 1.2 % slower."""

Packed = dict[str, tuple[Any, list[Any]]]
"""Per slot name: the flat array and, in parameter order, the views the state holds."""


def pays(params: list[Any]) -> bool:
    """Whether to update ``params`` packed: two or more of one dtype, of at most
    :data:`MEAN_SIZE` elements on average."""
    return len(params) > 1 and len({p.dtype for p in params}) == 1 and \
        sum(p.size for p in params) <= MEAN_SIZE * len(params)


def pack(state: dict[int, dict[str, Any]]) -> Packed | None:
    """Copy each slot of every parameter into one flat array per slot name and put views of
    it into ``state`` in place of the arrays; None (``state`` unchanged) where the slots of
    one name differ in dtype or the parameters differ in their slots' names."""
    if not state:
        return None
    names = tuple(state[0])
    if any(tuple(state[i]) != names for i in range(len(state))):
        return None
    packed: Packed = {}
    for name in names:
        slots = [state[i][name] for i in range(len(state))]
        if len({s.dtype for s in slots}) != 1:
            return None
        flat = gather(slots)
        offsets = [0, *itertools.accumulate(s.size for s in slots)]
        packed[name] = (flat, [flat[a:b].reshape(s.shape)
                               for s, a, b in zip(slots, offsets[:-1], offsets[1:], strict=True)])
    for name, (_, views) in packed.items():
        for i, view in enumerate(views):
            state[i][name] = view
    return packed


def packed(state: dict[int, dict[str, Any]], slots: Packed | None) -> bool:
    """Whether ``state`` still holds exactly the views of ``slots`` (nothing replaced)."""
    if slots is None or any(len(views) != len(state) for _, views in slots.values()):
        return False
    return all(len(state[i]) == len(slots) and
               all(state[i].get(name) is views[i] for name, (_, views) in slots.items())
               for i in range(len(state)))


def gather(arrays: list[Any]) -> Any:
    """The arrays' elements, one after the other, in one new flat array (C order).

    Shape:
        arrays: any shapes, one dtype; returns (total size,).
    """
    return xp.concatenate([a.reshape(-1) for a in arrays])


def scatter(flat: Any, arrays: list[Any]) -> None:
    """Copy ``flat``'s elements back into ``arrays``, in place: the inverse of :func:`gather`.

    Shape:
        flat: (total size of ``arrays``,).
    """
    start = 0
    for a in arrays:
        xp.copyto(a, flat[start:start + a.size].reshape(a.shape))
        start += a.size


ELEMENTWISE_PARALLEL_MIN = 2**17
"""Elementwise updates over fewer elements in all run in one piece, on the calling thread."""


def elementwise_groups(tensors: Sequence[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Cut tuples of same-shaped arrays into one group per thread, of about equal size.

    Each tuple (say a parameter, its gradient and its moment estimates) is kept whole or cut
    into flat, contiguous views of the same elements of each of its arrays, so that an
    elementwise update applied to every piece of every group changes exactly what it would
    have changed applied to the whole tuples, with the same results: run the groups with
    :func:`cnnumpy.backend.parallel_map`. Tuples with a non-contiguous array are never cut.
    With one thread, or fewer than :data:`ELEMENTWISE_PARALLEL_MIN` elements in all, the
    tuples are one group, uncut.
    """
    total = sum(arrays[0].size for arrays in tensors)
    if total < ELEMENTWISE_PARALLEL_MIN or not backend.threads_usable():
        return [list(tensors)]
    threads = backend.get_num_threads()
    groups: list[list[tuple[Any, ...]]] = [[] for _ in range(threads)]
    done = 0  # elements placed in groups so far
    for arrays in tensors:
        size = arrays[0].size
        if not all(a.flags.c_contiguous for a in arrays):
            groups[min(done * threads // total, threads - 1)].append(arrays)
            done += size
            continue
        flat = [a.reshape(-1) for a in arrays]  # views: contiguous
        start = 0
        while start < size:
            group = min(done * threads // total, threads - 1)
            stop = min(size, -(-(group + 1) * total // threads) - done + start)
            groups[group].append(tuple(a[start:stop] for a in flat))
            done += stop - start
            start = stop
    return [g for g in groups if g]
