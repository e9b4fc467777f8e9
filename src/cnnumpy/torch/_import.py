"""``from_torch``: load the weights of an equivalent PyTorch model into a Sequential or a
graph Model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from cnnumpy import layers
from cnnumpy.functional.conv import resolve_padding
from cnnumpy.graph_model import Model
from cnnumpy.torch._graph import graph_targets, pair_by_name
from cnnumpy.torch._sources import Source, _module_order, read

__all__ = ["from_torch", "_module_order"]

_DEPTHWISE = (layers.DepthwiseConv2D, layers.SeparableConv2D)


def _parts(layer: layers.Layer) -> tuple[str | None, ...]:
    """The PyTorch modules one layer takes its weights from: a SeparableConv2D two (its
    depthwise and pointwise nn.Conv2d), every other layer one."""
    return ("depthwise", "pointwise") if type(layer) is layers.SeparableConv2D else (None,)


def _depthwise_shapes(layer: layers.Layer, part: str | None) -> dict[str, tuple[int, ...]]:
    """PyTorch shapes of a DepthwiseConv2D or of one part of a SeparableConv2D."""
    w = layer.get_weights()
    if part == "pointwise":
        _, _, cm, f = w["pointwise_kernel"].shape
        return {"weight": (f, cm, 1, 1), **({"bias": (f,)} if "bias" in w else {})}
    kh, kw, c, m = w["kernel" if part is None else "depthwise_kernel"].shape
    has_bias = part is None and "bias" in w
    return {"weight": (c * m, 1, kh, kw), **({"bias": (c * m,)} if has_bias else {})}


def _torch_shapes(layer: layers.Layer, part: str | None = None) -> dict[str, tuple[int, ...]]:
    """The PyTorch tensors a layer (or one part of it) needs, with their PyTorch shapes."""
    w = layer.get_weights()
    if type(layer) is layers.BatchNormalization:
        return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), w["gamma"].shape)
    if type(layer) in _DEPTHWISE:
        return _depthwise_shapes(layer, part)
    if type(layer) in (layers.Conv2D, layers.Conv2DTranspose):  # transpose: (C, F, kh, kw)
        kh, kw, cg, f = w["kernel"].shape
        shapes = {"weight": (f, cg, kh, kw)}
    else:  # Dense: nn.Linear, or a 1x1 nn.Conv2d on the channels of an image
        n_in, units = w["kernel"].shape
        shapes = {"weight": (units, n_in, 1, 1) if len(layer.input_shape) == 3 else (units, n_in)}
    if "bias" in w:
        shapes["bias"] = w["bias"].shape
    return shapes


def _expected_module(layer: layers.Layer) -> tuple[type, ...]:
    image = len(layer.input_shape) == 3
    if type(layer) is layers.BatchNormalization:
        return (nn.BatchNorm2d,) if image else (nn.BatchNorm1d,)
    if type(layer) is layers.Conv2DTranspose:
        return (nn.ConvTranspose2d,)
    return (nn.Conv2d,) if type(layer) in (layers.Conv2D, *_DEPTHWISE) or image else (nn.Linear,)


def _torch_pads(conv: nn.Conv2d, extra: tuple[int, int, int, int]) -> tuple:
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        pairs = [(t // 2, t - t // 2) for t in total]
    else:
        pairs = [(0, 0)] * 2 if conv.padding == "valid" else [(p, p) for p in conv.padding]
    left, right, top, bottom = extra
    return ((pairs[0][0] + top, pairs[0][1] + bottom), (pairs[1][0] + left, pairs[1][1] + right))


def _config_problems(layer: layers.Layer, src: Source, part: str | None = None) -> list[str]:
    """Differences in the settings that change outputs (only known for a module source).
    For Conv2DTranspose the strides, dilation and groups (where its output starts depends
    on modules after it too)."""
    mod, where = src.module, f"{_label(layer, part)} <- {src.label}"
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not math.isclose(mod.eps, layer.epsilon, rel_tol=1e-6):
            return [f"{where}: eps={mod.eps:g} but epsilon={layer.epsilon:g}; create the layer "
                    f"with BatchNormalization(epsilon={mod.eps:g})"]
        return []
    if type(layer) not in (layers.Conv2D, layers.Conv2DTranspose, *_DEPTHWISE):
        return []
    groups = layer.input_shape[2] if type(layer) in _DEPTHWISE else getattr(layer, "groups", 1)
    ours = {"stride": layer.strides, "dilation": layer.dilation_rate, "groups": groups,
            "padding_mode": "zeros",
            "padding": resolve_padding(layer.padding, layer.input_shape[:2], layer.kernel_size,
                                       layer.strides, layer.dilation_rate)}
    theirs = {"stride": mod.stride, "dilation": mod.dilation, "groups": mod.groups,
              "padding_mode": mod.padding_mode, "padding": _torch_pads(mod, src.pads)}
    if part == "pointwise":
        ours = {"stride": (1, 1), "dilation": (1, 1), "groups": 1, "padding_mode": "zeros",
                "padding": ((0, 0), (0, 0))}
    elif type(layer) is layers.Conv2DTranspose:
        del ours["padding"]
    return [f"{where}: {key} {theirs[key]!r} differs from cnnumpy's {ours[key]!r}"
            for key in ours if _plain(ours[key]) != _plain(theirs[key])]


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, (tuple, list)) else value


def _label(layer: layers.Layer, part: str | None) -> str:
    return layer.label if part is None else f"{layer.label} ({part})"


def _problems(layer: layers.Layer, src: Source, part: str | None = None) -> list[str]:
    where = f"{_label(layer, part)} <- {src.label}"
    if src.module is not None and not isinstance(src.module, _expected_module(layer)):
        return [f"{where}: expected a {' or '.join(c.__name__ for c in _expected_module(layer))}"]
    expected, found = _torch_shapes(layer, part), src.tensors
    optional = {"weight", "bias"} if type(layer) is layers.BatchNormalization else set()
    problems = [f"{where}: missing {k!r}" for k in expected
                if k not in found and not (k in optional and not optional & found.keys())]
    problems += [f"{where}: unexpected {k!r}" for k in found if k not in expected]
    problems += [f"{where}: {k!r} has shape {tuple(found[k].shape)}, expected {shape}"
                 for k, shape in expected.items() if k in found and found[k].shape != shape]
    return problems + (_config_problems(layer, src, part) if src.module is not None else [])


def _convert(layer: layers.Layer, t: dict[str, np.ndarray], flattened: tuple | None,
             part: str | None = None) -> dict[str, np.ndarray]:
    """PyTorch tensors (already checked) to the layer's weights (those of ``part``)."""
    def chw_to_hwc(v: np.ndarray) -> np.ndarray:  # one flattened feature vector per row
        if flattened is None:
            return v
        h, w, c = flattened
        return v.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(v.shape)

    if type(layer) is layers.BatchNormalization:
        ones = np.ones_like(t["running_mean"])
        values = (t.get("weight", ones), t.get("bias", 0 * ones), t["running_mean"],
                  t["running_var"])
        return {k: chw_to_hwc(v) for k, v in zip(
            ("gamma", "beta", "moving_mean", "moving_variance"), values, strict=True)}
    if type(layer) in (layers.Conv2D, layers.Conv2DTranspose):
        weights = {"kernel": t["weight"].transpose(2, 3, 1, 0)}
    elif type(layer) in _DEPTHWISE:  # (C * M, 1, kh, kw) -> (kh, kw, C, M)
        kernel = t["weight"].transpose(2, 3, 1, 0)
        if part == "pointwise":
            weights = {"pointwise_kernel": kernel}
        else:
            c = layer.input_shape[2]
            kernel = kernel.reshape(*kernel.shape[:2], c, -1)
            weights = {"kernel" if part is None else "depthwise_kernel": kernel}
    else:
        weights = {"kernel": chw_to_hwc(t["weight"].reshape(t["weight"].shape[0], -1)).T}
    if "bias" in t:
        weights["bias"] = t["bias"]
    return weights


def from_torch(source: Any, model: Any) -> Any:
    """Load PyTorch weights into a built cnnumpy model; return the model.

    The layers with weights (Conv2D, Dense, BatchNormalization, DepthwiseConv2D,
    SeparableConv2D, Conv2DTranspose) are matched, in order, to the PyTorch modules with
    weights (Conv2d, Linear, BatchNorm2d/1d; a grouped Conv2d for depthwise, two Conv2d for
    separable, depthwise then 1x1; ConvTranspose2d) or, for a state dict, to the key prefixes
    (``features.0`` for ``features.0.weight``), numbered modules in numeric order. Everything
    is checked before anything is loaded, and all problems are reported together.

    Args:
        source: a ``torch.nn.Module`` (its settings are checked too: kinds, strides,
            padding, dilation, groups, ``eps``), a ``state_dict``, or the path of a
            ``.safetensors`` file or of a state dict saved with ``torch.save`` (loaded with
            ``weights_only=True``).
        model: a built :class:`~cnnumpy.Sequential` of the same architecture, or a graph
            :class:`~cnnumpy.Model`: its layers take the weights of the modules (or state-dict
            prefixes) named like them (``layer1.0.conv1``; also as ``to_torch`` names them,
            ``layer1_0_conv1``) when every layer with weights finds its name, else those in
            the order of the layers' first calls.

    Raises:
        ValueError: one error listing every mismatch (counts, missing or unexpected tensors,
            shapes, settings); TypeError: ``source`` is none of the above.
    """
    if not getattr(model, "layers", None) or not model.built:
        raise ValueError("cnnumpy.torch.from_torch: build the model first (give the first layer "
                         "input_shape=..., or call model.build(input_shape))")
    sources = read(source)
    if isinstance(model, Model):
        pairs, problems = _graph_pairs(model, sources)
    else:
        pairs, problems = _stack_pairs(model, sources)
    for layer, part, _, src in pairs:
        problems += _problems(layer, src, part)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ValueError(f"cnnumpy.torch.from_torch: the weights do not fit the model ({count}):"
                         + "".join(f"\n  - {p}" for p in problems))
    weights: dict[layers.Layer, dict[str, np.ndarray]] = {}
    for layer, part, flat, src in pairs:
        weights.setdefault(layer, {}).update(_convert(layer, src.tensors, flat, part))
    for layer, values in weights.items():
        layer.set_weights(values)
    return model


def _in_order(targets: list[tuple], sources: list[Source]) -> tuple[list[tuple], list[str]]:
    """Targets ``(layer, part, flattened)`` paired with the sources in order: ``(layer, part,
    flattened, source)``, and the problem of different counts."""
    pairs = [(*t, s) for t, s in zip(targets, sources, strict=False)]
    if len(sources) == len(targets):
        return pairs, []
    return pairs, [f"the model has {len(targets)} layers with weights "
                   f"({', '.join(_label(*t[:2]) for t in targets)}) but the PyTorch source has "
                   f"{len(sources)} ({', '.join(s.label for s in sources)})"]


def _stack_pairs(model: Any, sources: list[Source]) -> tuple[list[tuple], list[str]]:
    """A Sequential's layers with weights, paired with the sources in order."""
    targets, flattened = [], None
    for layer in model.layers:
        if type(layer) is layers.Flatten:
            flattened = layer.input_shape if len(layer.input_shape) == 3 else None
        elif type(layer) is layers.Reshape:  # to_torch's Reshape restores cnnumpy's order
            flattened = None
        elif layer.get_weights():
            targets += [(layer, part, flattened) for part in _parts(layer)]
            flattened = None if type(layer) is layers.Dense else flattened
    return _in_order(targets, sources)


def _graph_pairs(model: Any, sources: list[Source]) -> tuple[list[tuple], list[str]]:
    """A graph's layers with weights paired by name where every one finds its name among the
    sources' (module paths or state-dict prefixes), else in the order of their first calls."""
    targets = graph_targets(model, _parts)
    by_name = pair_by_name(targets, sources)
    return by_name if by_name is not None else _in_order(targets, sources)
