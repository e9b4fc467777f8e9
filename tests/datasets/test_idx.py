"""IDX reading: the bundled sample, real files, and every header check."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from cnnumpy.datasets import DatasetError, load_idx, load_mnist_sample, read_idx, to_categorical


def write_idx(path, array, type_byte=0x08, compress=False):
    header = struct.pack(">BBBB", 0, 0, type_byte, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(">u1" if type_byte == 0x08 else array.dtype).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def test_bundled_sample_is_real_mnist():
    (x_train, y_train), (x_test, y_test) = load_mnist_sample()
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10)) and len(y_test) == 2000
    # Real digits have ink in the middle and blank borders.
    assert x_train[:, 10:18, 10:18].mean() > 5 * x_train[:, :2].mean()


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "img", images, compress=compress)
    write_idx(tmp_path / "lab", np.array([3, 7], np.uint8), compress=compress)
    x, y = load_idx(str(tmp_path / "img"), str(tmp_path / "lab"))
    np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=1e-6)
    assert x.shape == (2, 3, 4, 1) and list(y) == [3, 7]


def test_header_checks(tmp_path):
    good = np.zeros((2, 2, 2), np.uint8)
    write_idx(tmp_path / "ok", good)
    data = (tmp_path / "ok").read_bytes()
    cases = {
        "magic": (b"\x01" + data[1:], "bad magic"),
        "type": (data[:2] + b"\x07" + data[3:], "unknown IDX type"),
        "short": (data[:6], "ends after"),
        "sizes": (data[:-1], "declares shape"),
        "trailing": (data + b"\x00", "declares shape"),
        "tiny": (b"\x00", "too short"),
        "gzip": (gzip.compress(data)[:20], "gzip"),
    }
    for name, (content, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DatasetError, match=match) as info:
            read_idx(str(path))
        assert str(path) in str(info.value)


def test_count_mismatch_and_missing_file(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "lab", np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match="3 images but .* 2 labels"):
        load_idx(str(tmp_path / "img"), str(tmp_path / "lab"))
    with pytest.raises(DatasetError, match="no such file"):
        read_idx(str(tmp_path / "nope"))
    assert isinstance(DatasetError("x"), ValueError)


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([1, 0], 3), [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="\\[0, 3\\)"):
        to_categorical([3], 3)
    with pytest.raises(TypeError):
        to_categorical([0.5], 3)
