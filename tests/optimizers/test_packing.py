"""Packed slots: an elementwise optimizer's update on all parameters gathered into one flat
array equals its update one parameter at a time, to the bit; replaced state is honoured."""

from __future__ import annotations

import numpy as np
import pytest

from cnnumpy import backend, optimizers
from cnnumpy.optimizers import packing

SHAPES = [(3, 3, 4, 8), (8,), (1,), (17, 5), (2, 2, 8, 1), (300, 450)]  # the last: cut in two
# pieces with 2 threads (packing.ELEMENTWISE_PARALLEL_MIN elements and more)

CASES = {
    "sgd": (optimizers.SGD, dict(learning_rate=0.1)),
    "sgd-nesterov-decay": (optimizers.SGD, dict(learning_rate=0.1, momentum=0.9,
                                                nesterov=True, weight_decay=5e-4)),
    "adam": (optimizers.Adam, dict(learning_rate=1e-2)),
    "adam-decay-amsgrad": (optimizers.Adam, dict(learning_rate=1e-2, weight_decay=0.01,
                                                 amsgrad=True)),
    "adamw": (optimizers.AdamW, dict(learning_rate=1e-2)),
    "rmsprop-centered-momentum": (optimizers.RMSprop, dict(learning_rate=1e-2, momentum=0.9,
                                                           centered=True, weight_decay=0.01)),
}


def _params(rng, dtypes=(np.float32,)):
    return [rng.standard_normal(s).astype(dtypes[i % len(dtypes)]) for i, s in enumerate(SHAPES)]


def _grads(rng, params):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def _pair(name):
    cls, kwargs = CASES[name]
    flat, one_by_one = cls(**kwargs), cls(**kwargs)
    one_by_one.elementwise = False  # the reference: _update on the parameters as they are
    return flat, one_by_one


@pytest.fixture(autouse=True)
def pack_any_size(monkeypatch):
    """Pack whatever the sizes (SHAPES' mean is above packing.MEAN_SIZE)."""
    monkeypatch.setattr(packing, "MEAN_SIZE", 10**9)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = backend.get_num_threads()
    backend.set_num_threads(request.param)
    yield request.param
    backend.set_num_threads(before)


@pytest.mark.parametrize("name", CASES)
def test_packed_update_equals_update_one_parameter_at_a_time(name, threads):
    flat, one_by_one = _pair(name)
    rng = np.random.default_rng(0)
    a = _params(rng)
    b = [p.copy() for p in a]
    ids = [id(p) for p in a]
    for _ in range(4):
        grads = _grads(rng, a)
        flat.apply(a, grads)
        one_by_one.apply(b, [g.copy() for g in grads])
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert [id(p) for p in a] == ids  # updated in place
    for i in range(len(SHAPES)):
        assert flat.state[i].keys() == one_by_one.state[i].keys()
        for key in flat.state[i]:
            assert flat.state[i][key].shape == SHAPES[i]
            np.testing.assert_array_equal(flat.state[i][key], one_by_one.state[i][key])
    assert flat._packed is not None and one_by_one._packed is None  # the paths differed


@pytest.mark.parametrize("name", ["sgd-nesterov-decay", "adam-decay-amsgrad"])
def test_replaced_and_loaded_state_is_used_then_packed_again(name):
    flat, one_by_one = _pair(name)
    rng = np.random.default_rng(1)
    a = _params(rng)
    b = [p.copy() for p in a]
    for opt, params in ((flat, a), (one_by_one, b)):
        opt.apply(params, _grads(np.random.default_rng(2), params))
    slot = next(iter(flat.state[3]))
    for opt in (flat, one_by_one):  # a user replaces one slot by an array of their own
        opt.state[3][slot] = np.full(SHAPES[3], 0.25, np.float32)
    grads = _grads(rng, a)
    flat.apply(a, grads)
    one_by_one.apply(b, grads)
    np.testing.assert_array_equal(a[3], b[3])
    saved = one_by_one.state_dict()
    flat.load_state_dict(saved)
    one_by_one.load_state_dict(saved)
    grads = _grads(rng, a)
    flat.apply(a, grads)
    one_by_one.apply(b, grads)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert packing.packed(flat.state, flat._packed)


def test_mixed_dtypes_run_one_parameter_at_a_time():
    flat, one_by_one = _pair("adam")
    rng = np.random.default_rng(3)
    a = _params(rng, dtypes=(np.float32, np.float64))
    b = [p.copy() for p in a]
    grads = _grads(rng, a)
    flat.apply(a, grads)
    one_by_one.apply(b, grads)
    for p, q in zip(a, b, strict=True):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)
    assert flat._packed is None


def test_few_large_tensors_are_updated_one_at_a_time(monkeypatch):
    monkeypatch.undo()  # packing.MEAN_SIZE as shipped
    small = [np.ones((8,), np.float32), np.ones((3, 3), np.float32)]
    large = [np.ones((300, 450), np.float32), np.ones((8,), np.float32)]
    assert packing.pays(small) and not packing.pays(large)
    assert not packing.pays(small[:1])
    assert not packing.pays([small[0], small[1].astype(np.float64)])
    flat, one_by_one = _pair("adam")
    b = [p.copy() for p in large]
    grads = _grads(np.random.default_rng(7), large)
    flat.apply(large, grads)
    one_by_one.apply(b, grads)
    for p, q in zip(large, b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert flat._packed is None


def test_an_optimizer_not_marked_elementwise_gets_its_parameters_as_they_are():
    seen = []

    class PerTensor(optimizers.Optimizer):
        def _update(self, params, grads, lr):
            seen.append([p.shape for p in params])
            for p, g in zip(params, grads, strict=True):
                p -= lr * g / (np.linalg.norm(g) + 1e-12)  # per-tensor: not elementwise

    params = _params(np.random.default_rng(4))
    PerTensor(0.1).apply(params, _grads(np.random.default_rng(5), params))
    assert seen == [SHAPES]


def test_gather_and_scatter_are_inverse():
    rng = np.random.default_rng(6)
    arrays = _params(rng)
    flat = packing.gather(arrays)
    assert flat.shape == (sum(int(np.prod(s)) for s in SHAPES),)
    targets = [np.zeros_like(a) for a in arrays]
    packing.scatter(flat, targets)
    for a, t in zip(arrays, targets, strict=True):
        np.testing.assert_array_equal(a, t)


@pytest.fixture
def set_threads():
    before = backend.get_num_threads()
    yield backend.set_num_threads
    backend.set_num_threads(before)


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_elementwise_groups_cover_every_element_once_in_balanced_views(threads, set_threads,
                                                                         monkeypatch):
    monkeypatch.setattr(packing, "ELEMENTWISE_PARALLEL_MIN", 1)
    set_threads(threads)
    rng = np.random.default_rng(threads)
    shapes = [(7, 5), (1,), (300,), (4, 3, 2), (2, 2)]
    tensors = [(np.zeros(s), np.zeros(s)) for s in shapes]
    odd = np.zeros((6, 4))[:, ::2]  # not contiguous: kept whole
    tensors.append((odd, np.zeros(odd.shape)))
    groups = packing.elementwise_groups(tensors)
    assert 1 < len(groups) <= threads
    for g, group in enumerate(groups):
        for a, b in group:
            assert a.shape == b.shape
            a += g + 1  # views: this marks the original arrays
            b += rng.integers(1, 5)
    for a, b in tensors:
        assert (a > 0).all() and (b > 0).all()  # every element in a piece...
    marks = np.concatenate([a.reshape(-1) for a, _ in tensors])
    assert marks.max() <= len(groups)  # ...and only in one
    sizes = [sum(a.size for a, _ in group) for group in groups]
    assert max(sizes) <= -(-sum(sizes) // threads) + odd.size  # about equal


def test_elementwise_groups_keep_small_updates_whole(set_threads):
    set_threads(2)
    tensors = [(np.zeros(10), np.zeros(10))]
    assert packing.elementwise_groups(tensors) == [tensors]
