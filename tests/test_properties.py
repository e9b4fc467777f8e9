"""Property tests (Hypothesis): shapes, adjoints, gradient conservation, file round trips,
and byte-level fuzzing of the two readers of untrusted files."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnumpy
from cnnumpy import layers
from cnnumpy.datasets import DatasetError, read_idx
from cnnumpy.functional import conv, pooling
from cnnumpy.io import ModelFormatError, load_model

sizes = st.integers(1, 9)


@given(h=sizes, w=sizes, k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same", 0, 1, 2]))
def test_conv_output_shape_matches_the_formula(h, w, k, s, d, padding):
    layer = layers.Conv2D(2, k, strides=s, padding=padding, dilation_rate=d)
    try:
        expected = layer.compute_output_shape((h, w, 1))
    except ValueError:
        return  # the kernel does not fit: the layer says so instead of producing garbage
    if padding == "same":
        assert expected[:2] == (-(-h // s), -(-w // s))
    y = layer.forward(np.zeros((1, h, w, 1), np.float32))
    assert y.shape[1:] == expected


@given(h=sizes, w=sizes, k=st.integers(1, 3), s=st.integers(1, 3), d=st.integers(1, 2),
       c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_im2col_and_col2im_are_adjoint(h, w, k, s, d, c, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, h, w, c))
    if conv.conv_output_size(h, k, s, 1, 1, d) < 1 or conv.conv_output_size(w, k, s, 1, 1, d) < 1:
        return
    cols = conv.im2col(x, k, s, 1, d)
    a = rng.standard_normal(cols.shape)
    lhs = np.sum(conv.col2im(a, x.shape, s, 1, d) * x)
    rhs = np.sum(a * cols)
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)


@given(h=st.integers(2, 9), w=st.integers(2, 9), p=st.integers(1, 3), s=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same"]), seed=st.integers(0, 2**16),
       ties=st.booleans())
def test_max_pool_gradient_preserves_the_incoming_sum(h, w, p, s, padding, seed, ties):
    rng = np.random.default_rng(seed)
    shape = (2, h, w, 2)
    x = rng.integers(0, 3, shape).astype(float) if ties else rng.standard_normal(shape)
    if padding == "valid" and (p > h or p > w):
        return
    y, cache = pooling.max_pool2d_forward(x, p, s, padding)
    dy = rng.standard_normal(y.shape)
    dx = pooling.max_pool2d_backward(dy, cache)
    assert np.sum(dx) == pytest.approx(np.sum(dy), rel=1e-12, abs=1e-12)


ARCH_LAYERS = [
    lambda: layers.Conv2D(2, 3, padding="same", activation="relu"),
    lambda: layers.Conv2D(4, 2, strides=2, groups=2),
    lambda: layers.BatchNormalization(),
    lambda: layers.MaxPool2D(2, padding="same"),
    lambda: layers.AvgPool2D(2, strides=1),
    lambda: layers.Dropout(0.2),
    lambda: layers.Activation("gelu"),
]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, len(ARCH_LAYERS) - 1), max_size=4),
       dtype=st.sampled_from(["float32", "float64"]), head=st.sampled_from(["dense", "gap"]),
       seed=st.integers(0, 2**16))
def test_save_load_round_trip_over_random_architectures(tmp_path, picks, dtype, head, seed):
    cnnumpy.set_seed(seed)
    stack = [layers.Conv2D(2, 1, input_shape=(8, 8, 2))] + [ARCH_LAYERS[i]() for i in picks]
    stack += [layers.Flatten(), layers.Dense(3)] if head == "dense" else [layers.GlobalAvgPool2D()]
    model = cnnumpy.Sequential(stack, dtype=dtype)
    model.build()
    for layer in model.layers:
        layer.set_weights({k: np.random.default_rng(seed).uniform(0.5, 1.5, v.shape)
                           for k, v in layer.get_weights().items()})
    path = str(tmp_path / "m.safetensors")
    model.save(path)
    loaded = load_model(path)
    x = np.random.default_rng(seed).standard_normal((3, 8, 8, 2)).astype(dtype)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def _valid_model_bytes() -> bytes:
    import tempfile

    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile("adam", "mse")
    model.build()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/m.safetensors"
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


VALID_MODEL = _valid_model_bytes()
VALID_IDX = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 2, 2) + bytes(range(8))


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf[: max(0, len(buf) - cut)])


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)


MEMORY_LIMIT = 2_000_000
"""Bytes a fuzz input may make a reader allocate beyond 20 times its own size: a declared
size that is believed (a header length, a tensor or IDX shape) would go far past it."""


def run_bounded(read, path, data: bytes, allowed: type[Exception]) -> None:
    """``read(path)`` may succeed or raise ``allowed``, and its peak Python and NumPy
    allocations (tracemalloc, traced for this one call) must stay under the memory limit."""
    path.write_bytes(data)
    tracemalloc.start()
    try:
        read(str(path))
    except allowed:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 20 * len(data) + MEMORY_LIMIT, f"{peak:,} bytes for a {len(data)}-byte input"


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(_mutate, st.just(VALID_MODEL), edits, st.integers(0, 40))))
def test_fuzz_load_model_raises_only_model_format_error(tmp_path, data):
    run_bounded(load_model, tmp_path / "fuzz.safetensors", data, ModelFormatError)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=64),
                      st.builds(_mutate, st.just(VALID_IDX), edits, st.integers(0, 8)),
                      st.builds(lambda b: gzip.compress(b)[:-3], st.binary(max_size=64))),
       compress=st.booleans())
def test_fuzz_read_idx_raises_only_dataset_error(tmp_path, data, compress):
    run_bounded(read_idx, tmp_path / "fuzz-idx", gzip.compress(data) if compress else data,
                DatasetError)
