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

A stack's tensors are ``layers.{index}.{weight}`` (:func:`build_model`); a graph's are
``layers.{layer_name}.{weight}`` (:func:`build_graph`), its shapes followed call by call
through the graph, in an order its names alone give (:func:`cnnumpy.graph_io.make_layers`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy._io_read import ModelFormatError

MAX_LAYERS = 1000
"""The most layers a model file may declare."""

MAX_SAMPLE_ELEMENTS = 2**28
"""The most elements a layer's input or output may have per sample in a model file's config
(1 GiB per image in float32; LeNet on 28x28 digits needs 25,088)."""

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
    _check_tensors([(f"layers.{i}", layer, shapes) for i, (layer, _, shapes)
                    in enumerate(plan)], tensors, path)
    file_dtypes = {a.dtype for k, a in tensors.items() if k.startswith("layers.")}
    dtype = dtype or (file_dtypes.pop() if len(file_dtypes) == 1 else None) or backend.floatx()
    try:
        for i, (layer, shape, expected) in enumerate(plan):
            layer.dtype = layer.dtype or dtype
            layer.build(shape, weights={k: tensors[f"layers.{i}.{k}"] for k in expected})
        return Sequential(layers, name=name, dtype=config.get("dtype"))
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: bad model_config: {exc}") from None


def build_graph(config: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    """A built graph ``Model`` from a file's ``model_config`` and its ``layers.*`` tensors,
    checked as a stack's is (see the module docstring) before any weight exists.

    Raises:
        ModelFormatError: naming ``path``: a malformed or oversized config, or tensors that
            do not match it (every mismatch listed in one message).
    """
    from cnnumpy import graph_io
    from cnnumpy.layers.merge import Merge

    items = config.get("layers") if isinstance(config, dict) else None
    if isinstance(items, list):  # counted before any layer is made
        calls = sum(len(item["inbound_nodes"]) for item in items if isinstance(item, dict)
                    and isinstance(item.get("inbound_nodes"), list))
        for count, what in ((len(items), "layers"), (calls, "layer calls")):
            if count > MAX_LAYERS:
                raise ModelFormatError(f"{path}: bad model_config: {count} {what}; a model "
                                       f"file may declare at most {MAX_LAYERS}")
    try:
        made = graph_io.make_layers(config)
        plan = _graph_plan(*made)
        graph_io.check_connected(config, *made)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise ModelFormatError(f"{path}: bad model_config: {exc}") from None
    _check_tensors([(f"layers.{layer.name}", layer, shapes)
                    for layer, _, shapes in plan.values()], tensors, path)
    try:
        for layer, shape, shapes in plan.values():
            if isinstance(layer, Merge):  # no weights
                layer.build(shape)
            else:
                layer.build(shape, weights={k: tensors[f"layers.{layer.name}.{k}"]
                                            for k in shapes})
        return graph_io.model_from_config(config, made)
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: bad model_config: {exc}") from None


def _graph_plan(table: dict, layers: dict, order: list) -> dict[str, tuple]:
    """``{name: (layer, input shape or shapes, weight shapes)}`` for every layer but the
    inputs, from arithmetic alone; each layer's dtype set as calling it would set it."""
    from cnnumpy.graph import InputLayer
    from cnnumpy.layers.merge import Merge

    shapes: dict[tuple[str, int], tuple[int, ...]] = {}
    dtypes: dict[tuple[str, int], Any] = {}
    for name, layer in layers.items():
        if isinstance(layer, InputLayer):
            _check_sizes(layer, [], layer.input_shape)
            shapes[(name, 0)], dtypes[(name, 0)] = layer.input_shape, layer.dtype
    plan: dict[str, tuple] = {}
    for name, k, refs in order:
        layer = layers[name]
        ins = [shapes[r] for r in refs]
        shape: Any = ins if isinstance(layer, Merge) else ins[0]
        sources = ", ".join(f"{layers[r[0]].label} (output shape {shapes[r]})" for r in refs)
        if name in plan and plan[name][1] != shape:
            raise ValueError(f"{layer.label} was built for input shape {plan[name][1]}, but "
                             f"is called on {sources}")
        if name not in plan:
            if not isinstance(layer, Merge) and layer.input_shape not in (None, shape):
                raise ValueError(f"{layer.label} was given input_shape={layer.input_shape}, "
                                 f"but is called on {sources}")
            layer.dtype = layer.dtype or dtypes[refs[0]]
            try:
                weights = {} if isinstance(layer, Merge) else layer.weight_shapes(shape)
                out = layer.compute_output_shape(shape)
            except ValueError as exc:
                raise ValueError(f"{layer.label} cannot be called on {sources}: {exc}") from None
            plan[name] = (layer, shape, weights)
        out = layer.compute_output_shape(shape)
        _check_sizes(layer, ins, out)
        shapes[(name, k)], dtypes[(name, k)] = out, layer.dtype
    return plan


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
        _check_sizes(layer, [shape], out)
        plan.append((layer, tuple(shape), layer.weight_shapes(tuple(shape))))
        shape = out
    return plan


def _check_sizes(layer: Any, shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> None:
    for what, dims in [*(("input", s) for s in shapes), ("output", out)]:
        if math.prod(dims) > MAX_SAMPLE_ELEMENTS:
            raise ValueError(f"{layer.label}: an {what} of shape {tuple(dims)} per sample "
                             f"is more than a model file may declare ({MAX_SAMPLE_ELEMENTS:,} "
                             "elements)")


def _check_tensors(plan: list[tuple[str, Any, dict]], tensors: dict[str, np.ndarray],
                   path: str) -> None:
    """The weights the config implies fit in the file, and each tensor has its shape;
    ``plan`` holds ``(prefix, layer, weight shapes)``, the tensors named ``prefix.weight``."""
    problems, expected = [], set()
    for prefix, layer, shapes in plan:
        for name, shape in shapes.items():
            key = f"{prefix}.{name}"
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
    held = sum(a.nbytes for a in tensors.values())
    implied = sum(math.prod(s) for _, _, shapes in plan for s in shapes.values()) * 4
    if implied > held:  # then some tensor is missing or smaller than its layer expects
        problems.insert(0, f"the model config implies at least {implied:,} bytes of weights, "
                           f"but the file holds {held:,} bytes of arrays")
    if problems:
        raise ModelFormatError(f"{path}: weights do not match the model config: "
                               + "; ".join(problems))
