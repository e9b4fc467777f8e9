"""Reading a model file's bytes: the framing, the header and the tensor table are checked
before the safetensors parser sees them, so a malformed, hostile or foreign file (a pickle, a
PyTorch state dict, another format) is refused with a :class:`cnnumpy.io.ModelFormatError`
naming it. Used by :func:`cnnumpy.io.load_model`. It imports nothing of cnnumpy's: the
error class, the format's name and the JSON reading live here, and :mod:`cnnumpy.io`
re-exports them.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

FORMAT = "cnnumpy"
MAX_HEADER_BYTES = 100 * 1024 * 1024


class ModelFormatError(ValueError):
    """A model file is malformed, unsafe, or does not match its own config."""


def _no_duplicates(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ModelFormatError(f"duplicate keys {dupes} in JSON")
    return dict(pairs)


def _loads(text: str, what: str, path: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {what}: {exc}") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: {what} is nested too deeply") from None
    except ValueError as exc:
        raise ModelFormatError(f"{path}: {what} is not valid JSON ({exc})") from None


_MAGIC = [  # (first bytes, what a file starting with them is)
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"BM", "a BMP image"),
    (b"\x1f\x8b", "a gzip file"), (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)"), (b"%PDF", "a PDF document"),
]


def looks_like(data: bytes) -> str | None:
    """What a file that is not a safetensors file looks like, from its first bytes, or None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:1024]
    if head[:1] == b"\x08" and (b"onnx" in head.lower() or head[2:3] in (b"\x12", b"\x3a")):
        return "an ONNX file"  # a protobuf ModelProto: ir_version, then producer or graph
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return None
        text = head[:exc.start].decode("utf-8")
    if text and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        return "JSON text" if text.lstrip()[:1] in ("{", "[") else "a text file"
    return None


def _parse_header(data: bytes, path: str) -> dict[str, str]:
    """Check the framing before the safetensors parser sees the bytes; return the metadata."""
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    framed = len(data) >= 8 and n <= MAX_HEADER_BYTES and 8 + n <= len(data)
    if not (framed and data[8:9] == b"{"):
        if data[:1] == b"\x80" or data[:2] == b"PK":
            kind = "a pickle" if data[:1] == b"\x80" else "a zip/npz archive"
            if kind != "a pickle" and b"data.pkl" in data[:4096]:
                kind = "a PyTorch .pt file (a zip archive holding a pickle)"
            raise ModelFormatError(f"{path}: this is {kind}, not a cnnumpy model file; pickles "
                                   "can run arbitrary code when opened, so cnnumpy never loads "
                                   "them")
        other = looks_like(data) if len(data) >= 8 else None
        if other is not None:
            raise ModelFormatError(f"{path}: this is {other}, not a cnnumpy model file "
                                   "(a .safetensors file written by cnnumpy)")
    if len(data) < 8:
        raise ModelFormatError(f"{path}: too short to be a model file ({len(data)} bytes)")
    if not framed:
        raise ModelFormatError(f"{path}: not a cnnumpy model file (its first 8 bytes declare a "
                               f"header length of {n} bytes, larger than "
                               f"{'the limit' if n > MAX_HEADER_BYTES else 'the file'})")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(f"{path}: header is not UTF-8") from None
    if not text.startswith("{"):
        raise ModelFormatError(f"{path}: header is not a JSON object")
    header = _loads(text, "header", path)
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFormatError(f"{path}: metadata values must all be strings")
    if meta.get("format") != FORMAT:  # before its tensors: a PyTorch state dict has int64 ones
        raise ModelFormatError(f"{path}: a safetensors file but not a cnnumpy model file "
                               f"(format={meta.get('format')!r}); PyTorch weights load into a "
                               "built model with cnnumpy.torch.from_torch")
    _check_tensor_table(header, len(data) - 8 - n, path)
    return meta


_ITEMSIZE = {"F32": 4, "F64": 8}


def _check_tensor_table(header: dict, buffer_size: int, path: str) -> None:
    """Every tensor: a known dtype, a sane shape, and byte ranges that tile the buffer exactly
    (in order, no gap, no overlap, no trailing bytes), as its shape and dtype require."""
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelFormatError(f"{where}: entry must hold exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ITEMSIZE:
            raise ModelFormatError(f"{where}: unsupported dtype {dtype!r}; model files hold "
                                   f"{sorted(_ITEMSIZE)}")
        if not isinstance(shape, list) or not all(
                type(d) is int and 0 <= d <= buffer_size for d in shape):
            raise ModelFormatError(f"{where}: bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise ModelFormatError(f"{where}: bad data_offsets {offsets!r}")
        size = _ITEMSIZE[dtype]
        for d in shape:
            size *= d
            if size > buffer_size:
                break
        if size != offsets[1] - offsets[0]:
            raise ModelFormatError(f"{where}: shape {shape} of {dtype} needs {size} bytes but "
                                   f"data_offsets {offsets} hold {offsets[1] - offsets[0]}")
        entries.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(entries):
        if begin != end:
            kind = "overlaps the tensor before it" if begin < end else "leaves a gap before it"
            raise ModelFormatError(f"{path}: tensor {name!r} {kind} (offset {begin}, expected "
                                   f"{end})")
        end = stop
    if end != buffer_size:
        raise ModelFormatError(f"{path}: the tensors hold {end} bytes but the file has "
                               f"{buffer_size} bytes of data")


def _read_tensors(path: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    meta = _parse_header(data, path)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from None
    return meta, tensors
