"""Building a model from a model file's config and tensors, checking everything first.

A file's config says what to build; its tensors say what the weights are. A hostile config can
claim ``Dense(units=20000000)`` beside a small kernel, or thousands of layers, or an input of a
billion pixels. So, before any weight exists, the model is checked from numbers alone:

1. at most :data:`MAX_LAYERS` layers (counted before any layer is made);
2. each layer's input and output shapes (arithmetic, via ``compute_output_shape``), none with
   more than :data:`MAX_SAMPLE_ELEMENTS` elements per sample;
3. the weights the config implies (``Layer.weight_shapes``) fit in the bytes the file holds;
4. every tensor has exactly the shape its layer expects, and there is no other.

Only then are the layers built, from the file's arrays (``Layer.build(shape, weights)``): no
initializer runs and the random generator is not touched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.io import ModelFormatError

MAX_LAYERS = 1000
"""The most layers a model file may declare."""

MAX_SAMPLE_ELEMENTS = 2**28
"""The most elements a layer's input or output may have per sample in a model file's config
(1 GiB per image in float32; LeNet on 28x28 digits needs 25,088)."""

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


def build_model(config: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    """A built Sequential from a file's ``model_config`` and its ``layers.*`` tensors.

    Raises:
        ModelFormatError: naming ``path``: a malformed or oversized config, or tensors that
            do not match it (every mismatch listed in one message).
    """
    from cnnumpy.layers import layer_from_config
    from cnnumpy.model import Sequential

    items = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(items, list) or not items:
        raise ModelFormatError(f"{path}: bad model_config: expected an object with a non-empty "
                               "list of layers")
    if len(items) > MAX_LAYERS:
        raise ModelFormatError(f"{path}: bad model_config: {len(items)} layers; a model file "
                               f"may declare at most {MAX_LAYERS}")
    try:
        name, dtype = config.get("name", "sequential"), config.get("dtype")
        if dtype is not None:
            dtype = backend.as_float_dtype(dtype, "Sequential")
        layers = [layer_from_config(item) for item in items]
        plan = _plan(layers, path)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelFormatError(f"{path}: bad model_config: {exc}") from None
    _check_tensors(plan, tensors, path)
    file_dtypes = {a.dtype for k, a in tensors.items() if k.startswith("layers.")}
    dtype = dtype or (file_dtypes.pop() if len(file_dtypes) == 1 else None) or backend.floatx()
    try:
        for i, (layer, shape, expected) in enumerate(plan):
            layer.dtype = layer.dtype or dtype
            layer.build(shape, weights={k: tensors[f"layers.{i}.{k}"] for k in expected})
        return Sequential(layers, name=name, dtype=config.get("dtype"))
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: bad model_config: {exc}") from None


def _plan(layers: list, path: str) -> list[tuple[Any, tuple[int, ...], dict[str, tuple]]]:
    """``(layer, input shape, weight shapes)`` for each layer, from arithmetic alone."""
    shape = layers[0].input_shape
    if shape is None:
        raise ValueError(f"the first layer ({layers[0].label}) has no input_shape")
    plan = []
    for layer in layers:
        if layer.input_shape is not None and layer.input_shape != tuple(shape):
            raise ValueError(f"{layer.label} was given input_shape={layer.input_shape}, but "
                             f"the layer before it outputs {tuple(shape)}")
        out = layer.compute_output_shape(shape)
        for what, dims in (("input", shape), ("output", out)):
            if math.prod(dims) > MAX_SAMPLE_ELEMENTS:
                raise ValueError(f"{layer.label}: an {what} of shape {tuple(dims)} per sample "
                                 f"is more than a model file may declare ({MAX_SAMPLE_ELEMENTS:,} "
                                 "elements)")
        plan.append((layer, tuple(shape), layer.weight_shapes(tuple(shape))))
        shape = out
    return plan


def _check_tensors(plan: list, tensors: dict[str, np.ndarray], path: str) -> None:
    """The weights the config implies fit in the file, and each tensor has its shape."""
    held = sum(a.nbytes for a in tensors.values())
    implied = sum(math.prod(s) for _, _, shapes in plan for s in shapes.values()) * 4
    if implied > held:
        raise ModelFormatError(f"{path}: the model config implies at least {implied:,} bytes of "
                               f"weights, but the file holds {held:,} bytes of arrays")
    problems, expected = [], set()
    for i, (layer, _, shapes) in enumerate(plan):
        for name, shape in shapes.items():
            key = f"layers.{i}.{name}"
            expected.add(key)
            if key not in tensors:
                problems.append(f"missing tensor {key!r} ({layer.label})")
            elif tensors[key].shape != shape:
                problems.append(f"tensor {key!r} has shape {tensors[key].shape}, "
                                f"{layer.label} expects {shape}")
            elif tensors[key].dtype not in (np.float32, np.float64):
                problems.append(f"tensor {key!r} has dtype {tensors[key].dtype}, "
                                "expected a float")
    problems += [f"unexpected tensor {k!r}" for k in tensors
                 if k not in expected and not k.startswith("optimizer.")]
    if problems:
        raise ModelFormatError(f"{path}: weights do not match the model config: "
                               + "; ".join(problems))
