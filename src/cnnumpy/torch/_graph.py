"""Graph models (:class:`cnnumpy.Model`) and PyTorch: :class:`GraphModule`, what
``to_torch`` returns for them, and how ``from_torch`` pairs their layers with PyTorch modules.

Each layer becomes one submodule named after it (characters other than letters, digits and
``_`` replaced by ``_``: ``layer1.0.conv1`` is ``layer1_0_conv1``); its PyTorch modules are
those of the same layer in a ``Sequential`` (an ``nn.Sequential`` of them where there are
several, e.g. a convolution and its activation). A shared layer is one submodule called once
per use. Merges are torch operations in ``forward``: ``+``, ``-``, ``*``, their mean, and
``torch.cat`` (channels are dim 1 of NCHW images).

A ``Flatten`` of an (H, W, C) image yields (C, H, W) order in PyTorch, so, as for a
``Sequential``, the ``Dense`` (and ``BatchNormalization``) after it have their features
permuted. Where flattened vectors of different origins meet (a merge, a shared layer), they
are first put back in cnnumpy's order, and so is the model's output.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from cnnumpy import layers
from cnnumpy.graph import InputLayer
from cnnumpy.layers.merge import Add, Average, Concatenate, Merge, Multiply, Subtract

_NCHW_FROM_NHWC = [0, 3, 1, 2]


def module_name(name: str) -> str:
    """A layer name as a PyTorch submodule name: ``layer1.0.conv1`` -> ``layer1_0_conv1``."""
    return re.sub(r"\W", "_", name) or "_"


def flat_plan(model: Any) -> dict[int, tuple[list[tuple | None], tuple | None]]:
    """By ``id(node)``: ``(reorders, flattened)``: per input, the (H, W, C) of the flattened
    image to put back in cnnumpy's order before the node (or None), and the (H, W, C) whose
    (C, H, W) order its (first) input then holds (or None).

    ``plan[id(model.output)]`` is the same for the model's output.
    """
    state: dict[int, tuple | None] = {id(model.input): None}  # by id(tensor)
    plan: dict[int, tuple[list[tuple | None], tuple | None]] = {}
    calls: dict[int, int] = {}
    for node in model._nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    for node in model._nodes:
        if isinstance(node.layer, InputLayer):
            continue
        ins = [state[id(t)] for t in node.inputs]
        layer, kind = node.layer, type(node.layer)
        shared = calls[id(layer)] > 1
        if isinstance(layer, Merge):
            keep = kind is not Concatenate and len(set(ins)) == 1
        else:
            keep = not shared
        reorders = [None if keep else f for f in ins]
        flat = ins[0] if keep else None
        plan[id(node)] = (reorders, flat)
        shape = node.inputs[0].shape
        if kind is layers.Flatten:
            out = shape if len(shape) == 3 else (flat if len(shape) == 1 else None)
        elif kind in (layers.Dense, layers.Reshape):
            out = None
        else:
            out = flat
        state[id(node.output)] = out
    plan[id(model.output)] = ([state[id(model.output)]], None)
    return plan


def _to_cnnumpy_order(x: torch.Tensor, hwc: tuple) -> torch.Tensor:
    h, w, c = hwc
    return x.reshape(len(x), c, h, w).permute(0, 2, 3, 1).reshape(len(x), -1)


class GraphModule(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (not followed)
    """A graph model's PyTorch twin: one submodule per layer, run in the graph's order.

    Args:
        steps: ``(what, inputs, output, reorders)`` per node in topological order: ``what`` is
            a submodule name, or a merge (``"add"``, ``"sub"``, ``"mul"``, ``"mean"``,
            ``("cat", dim)``); ``inputs``/``output`` number the tensors (0: the input);
            ``reorders`` holds, per input, the (H, W, C) of a flattened image to put back in
            cnnumpy's order first, or None.
        output: the number of the output tensor; output_order: as ``reorders`` for it.

    Shape:
        input (N, C, H, W) for images, else ``(N, *input_shape)``; output likewise.
    """

    def __init__(self, steps: list[tuple], output: int, output_order: tuple | None) -> None:
        super().__init__()
        self.steps, self.output, self.output_order = steps, output, output_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {0: x}
        for what, inputs, out, reorders in self.steps:
            args = [v if hwc is None else _to_cnnumpy_order(v, hwc)
                    for v, hwc in zip((values[i] for i in inputs), reorders, strict=True)]
            if isinstance(what, tuple):
                y = torch.cat(args, dim=what[1])
            elif what in ("add", "mean"):
                y = args[0] + args[1]
                for a in args[2:]:
                    y = y + a
                y = y / len(args) if what == "mean" else y
            elif what == "sub":
                y = args[0] - args[1]
            elif what == "mul":
                y = args[0] * args[1]
                for a in args[2:]:
                    y = y * a
            else:
                y = self.get_submodule(what)(args[0])
            values[out] = y
        y = values[self.output]
        return y if self.output_order is None else _to_cnnumpy_order(y, self.output_order)


_MERGE_OPS = {Add: "add", Subtract: "sub", Multiply: "mul", Average: "mean"}


def _merge_op(layer: Merge, rank: int) -> Any:
    if type(layer) is Concatenate:
        axis = layer._sample_axis(rank) + 1
        return ("cat", _NCHW_FROM_NHWC.index(axis) if rank == 3 else axis)
    return _MERGE_OPS[type(layer)]


def graph_to_torch(model: Any, dtype: torch.dtype, modules_of: Any) -> GraphModule:
    """The :class:`GraphModule` of ``model``; ``modules_of(layer, shape, flattened)`` gives
    a single-input layer's PyTorch modules, its activation included."""
    names: dict[int, str] = {}
    plan, numbers = flat_plan(model), {id(model.input): 0}
    steps: list[tuple] = []
    net = GraphModule(steps, 0, None)
    for node in model._nodes:
        if isinstance(node.layer, InputLayer):
            continue
        layer, (reorders, flat) = node.layer, plan[id(node)]
        if isinstance(layer, Merge):
            what = _merge_op(layer, len(node.inputs[0].shape))
        elif id(layer) in names:
            what = names[id(layer)]
        else:
            what = module_name(layer.name)
            while hasattr(net, what) or what in names.values():
                what += "_"
            mods = modules_of(layer, node.inputs[0].shape, flat) or [nn.Identity()]
            net.add_module(what, mods[0] if len(mods) == 1 else nn.Sequential(*mods))
            names[id(layer)] = what
        numbers[id(node.output)] = len(numbers)
        steps.append((what, [numbers[id(t)] for t in node.inputs], numbers[id(node.output)],
                      reorders))
    net.output = numbers[id(model.output)]
    net.output_order = plan[id(model.output)][0][0]
    return net.to(dtype).eval()


def graph_targets(model: Any, parts: Any) -> list[tuple[layers.Layer, str | None, Any]]:
    """``(layer, part, flattened)`` for each layer with weights, in the order of their first
    calls; ``parts(layer)`` names the PyTorch modules a layer takes."""
    plan, seen, targets = flat_plan(model), set(), []
    for node in model._nodes:
        layer = node.layer
        if id(layer) in seen or isinstance(layer, (InputLayer, Merge)) or not layer.get_weights():
            continue
        seen.add(id(layer))
        targets += [(layer, part, plan[id(node)][1]) for part in parts(layer)]
    return targets


def pair_by_name(targets: list[tuple], sources: list[Any]) -> tuple[list[tuple], list[str]] | None:
    """``(pairs, problems)``: each target with the source named after its layer (or, for a
    layer whose modules are nested, the sources under that name, in order); None when some
    layer with weights has no source of its name (then layers pair in order)."""
    exact = {key for layer, _, _ in targets for key in (layer.name, module_name(layer.name))}
    claims: dict[int, list[Any]] = {}
    for layer, _, _ in targets:
        if id(layer) in claims:
            continue
        found = []
        for key in (layer.name, module_name(layer.name)):
            found = [s for s in sources if s.name == key] or [
                s for s in sources if s.name.startswith(key + ".") and s.name not in exact]
            if found:
                break
        if not found:
            return None
        claims[id(layer)] = found
    pairs, problems, used = [], [], set[str]()
    for layer in {id(t[0]): t[0] for t in targets}.values():
        mine = [t for t in targets if t[0] is layer]
        found = claims[id(layer)]
        if len(found) != len(mine):
            problems.append(f"{layer.label} takes {len(mine)} PyTorch module(s), found "
                            f"{len(found)} under its name: {', '.join(s.label for s in found)}")
        pairs += [(*t, s) for t, s in zip(mine, found, strict=False)]
        used.update(s.name for s in found)
    problems += [f"{s.label}: no layer of that name takes these weights" for s in sources
                 if s.name not in used]
    return pairs, problems

