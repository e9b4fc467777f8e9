"""Reading the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

An IDX file is a big-endian header (two zero bytes, a type byte, the number of dimensions,
then each dimension as a 32-bit integer) followed by the values. Every field is checked
explicitly; anything wrong raises :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(ValueError):
    """A dataset file or folder is missing, malformed or inconsistent."""


def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return data


def read_idx(path: str) -> np.ndarray:
    """Return the array stored in one IDX file (``.gz`` or raw).

    Raises:
        DatasetError: bad magic, unknown type byte, or sizes that disagree with the bytes.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: bad magic number {data[:4].hex()} (an IDX file starts "
                           "with two zero bytes)")
    type_byte, ndim = data[2], data[3]
    if type_byte not in _IDX_TYPES:
        raise DatasetError(f"{path}: unknown IDX type byte 0x{type_byte:02x}")
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: header declares {ndim} dimensions but the file ends "
                           f"after {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[type_byte])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{path}: header declares shape {dims} ({expected} bytes of data) "
                           f"but the file holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Load an IDX image file and its label file.

    Returns:
        ``(x, y)``: images as float32 in [0, 1] with a channel axis, and int64 labels.

    Shape:
        ``x``: (N, H, W, 1); ``y``: (N,).
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected images of shape (N, H, W), "
                           f"found {images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected labels of shape (N,), found {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                           f"{len(labels)} labels")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    x = (images.astype(np.float32) / np.float32(scale))[..., np.newaxis]
    return x, labels.astype(np.int64)
