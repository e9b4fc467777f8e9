"""Model files: one ``.safetensors`` file holding every array and, as metadata, the config.

Layout:
    tensors   ``layers.{index}.{name}`` for each layer's params and state, and
              ``optimizer.{index}.{slot}`` for the optimizer's state when it is included;
    metadata  ``format`` = "cnnumpy", ``format_version``, ``model_config`` (JSON), ``epoch``
              (epochs completed), optionally ``class_names`` (JSON), ``preprocessing`` (JSON: how
              images become inputs), ``compile_config``
              (JSON: loss, optimizer, metrics), ``optimizer_iterations`` and, in checkpoints,
              ``rng_state`` (the library generator's state, JSON).

Loading trusts nothing in the file. Nothing it names is imported, evaluated or looked up on a
module: layer, loss and optimizer names go through explicit tables. Pickles are refused.
The bytes are checked (framing, header, tensor table) before the safetensors parser sees them
(:mod:`cnnumpy._io_read`). Writes are atomic (:mod:`cnnumpy.files`): a temporary file in the
same folder, flushed, synced and renamed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy._io_read import FORMAT, _loads, _read_tensors
from cnnumpy._io_read import ModelFormatError as ModelFormatError  # re-exported: its public home
from cnnumpy.files import atomic_write, check_folder

FORMAT_VERSION = 1
def check_writable(path: str, model: Any = None, where: str = "check_writable") -> None:
    """Check, before a long job, that a model file can be written at ``path``.

    Writes a temporary file in the folder as saving does (the model's own bytes when given,
    so a disk too full for it is noticed; else 4 KiB), syncs it and removes it.

    Raises:
        OSError: naming ``where`` and the folder: missing, read-only or full; or ``path``
            is a folder or a device.
    """
    data = _model_bytes(model) if model is not None and model.built else bytes(4096)
    check_folder(path, data, where)


def save_model(model: Any, path: str, include_optimizer: bool = True) -> None:
    """Save ``model`` (built) to ``path`` as a safetensors file; see the module docstring."""
    atomic_write(path, _model_bytes(model, include_optimizer))


def _model_bytes(model: Any, include_optimizer: bool = True) -> bytes:
    from safetensors.numpy import save

    from cnnumpy import losses, optimizers

    if not model.built:
        raise ValueError("save_model: the model is not built yet; fit, predict or build it first")
    by_name = model.get_config().get("class_name") == "Model"  # a graph: layers by name
    tensors = {f"layers.{layer.name if by_name else i}.{name}": np.ascontiguousarray(arr)
               for i, layer in enumerate(model.layers)
               for name, arr in layer.get_weights().items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "model_config": json.dumps(model.get_config()), "epoch": str(int(model.epoch))}
    if model.class_names is not None:
        metadata["class_names"] = json.dumps([str(c) for c in model.class_names])
    if getattr(model, "preprocessing", None) is not None:
        from cnnumpy.datasets.images import check_settings

        check_settings(model.preprocessing, model.input_shape, "save_model: preprocessing")
        metadata["preprocessing"] = json.dumps(model.preprocessing)
    if model.loss is not None and model.optimizer is not None:
        metadata["compile_config"] = json.dumps({
            "loss": losses.serialize(model.loss),
            "optimizer": optimizers.serialize(model.optimizer),
            "metrics": list(model.metrics)})
        if include_optimizer:
            # A checkpoint: with the random generator's state, a resumed run draws the same
            # shuffles and dropout masks as one that never stopped.
            metadata["rng_state"] = json.dumps(backend.rng_state())
            state = model.optimizer.state_dict()
            metadata["optimizer_iterations"] = str(int(state["iterations"]))
            for index, slots in state["state"].items():
                for slot, arr in slots.items():
                    tensors[f"optimizer.{int(index)}.{slot}"] = np.ascontiguousarray(arr)
    return save(tensors, metadata=metadata)


def load_model(path: str, compile: bool = True) -> Any:
    """Load a model saved by :func:`save_model` (or ``model.save``).

    Raises:
        ModelFormatError: the file is malformed, a pickle, from a newer cnnumpy, or its
            arrays disagree with its config (all disagreements listed in one message).

    Example:
        >>> import os, tempfile
        >>> from cnnumpy import layers
        >>> model = cnnumpy.Sequential([layers.Dense(3, input_shape=(4,))])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> model.save(path)
        >>> restored = cnnumpy.load_model(path)
        >>> x = np.ones((1, 4), "float32")
        >>> bool((restored.predict(x, verbose=0) == model.predict(x, verbose=0)).all())
        True
    """
    from cnnumpy import graph_io, losses, optimizers
    from cnnumpy.model_file import build_graph, build_model

    meta, tensors = _read_tensors(path)  # a cnnumpy model file's
    version = meta.get("format_version", "")
    if not version.isdigit():
        raise ModelFormatError(f"{path}: missing or malformed format_version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise ModelFormatError(f"{path}: written by a newer cnnumpy (format_version {version}); "
                               f"this version reads up to {FORMAT_VERSION}")
    config = _loads(meta.get("model_config", ""), "model_config", path)
    # every shape checked before any allocation; weights built from the file's arrays
    if graph_io.is_graph_config(config):  # a graph model (cnnumpy.Model)
        model = build_graph(config, tensors, path)
    else:
        model = build_model(config, tensors, path)
    epoch = meta.get("epoch", "0")
    model.epoch = int(epoch) if epoch.isdigit() else 0
    model.rng_state = _rng_state(meta, path)
    if "class_names" in meta:
        names = _loads(meta["class_names"], "class_names", path)
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise ModelFormatError(f"{path}: class_names must be a list of strings")
        model.class_names = names
    if "preprocessing" in meta:  # how images become inputs (cnnumpy.datasets.prepare_image)
        from cnnumpy.datasets.images import check_settings

        settings = _loads(meta["preprocessing"], "preprocessing", path)
        try:
            check_settings(settings, model.input_shape, "preprocessing")
        except ValueError as exc:
            raise ModelFormatError(f"{path}: {exc}") from None
        model.preprocessing = settings
    if compile and "compile_config" in meta:
        cc = _loads(meta["compile_config"], "compile_config", path)
        try:
            model.compile(optimizers.deserialize(cc["optimizer"]), losses.deserialize(cc["loss"]),
                          metrics=cc.get("metrics", []))
            _assign_optimizer_state(model, tensors, meta)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFormatError(
                f"{path}: bad compile_config or optimizer state: {exc}") from None
    return model


def _rng_state(meta: dict[str, str], path: str) -> dict | None:
    """The saved generator state, checked to be a PCG64 state of plain integers."""
    if "rng_state" not in meta:
        return None
    state = _loads(meta["rng_state"], "rng_state", path)
    inner = state.get("state") if isinstance(state, dict) else None
    if (not isinstance(inner, dict) or state.get("bit_generator") != "PCG64"
            or not all(isinstance(inner.get(k), int) for k in ("state", "inc"))):
        raise ModelFormatError(f"{path}: rng_state is not a PCG64 generator state")
    return state


def _assign_optimizer_state(model: Any, tensors: dict[str, np.ndarray], meta: dict) -> None:
    state: dict[int, dict[str, np.ndarray]] = {}
    for key, arr in tensors.items():
        if key.startswith("optimizer."):
            _, number, slot = key.split(".", 2)
            state.setdefault(int(number), {})[slot] = arr
    params = model.trainable_weights()[0]
    if state and len(state) != len(params):
        raise ValueError(f"optimizer state for {len(state)} parameters, the model has "
                         f"{len(params)}")
    for index, slots in state.items():
        for slot, arr in slots.items():
            if index < len(params) and arr.shape != params[index].shape:
                raise ValueError(f"tensor 'optimizer.{index}.{slot}' has shape {arr.shape}, "
                                 f"its parameter {params[index].shape}")
    if state or "optimizer_iterations" in meta:
        model.optimizer.load_state_dict(
            {"iterations": int(meta.get("optimizer_iterations", "0")), "state": state})
