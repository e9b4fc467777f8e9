"""What ``from_torch`` reads: the PyTorch modules (or state-dict prefixes) that hold weights,
in the order of their modules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn


class Source(NamedTuple):
    """One PyTorch module (or state-dict prefix) that holds weights."""

    name: str  # e.g. "features.0"
    tensors: dict[str, np.ndarray]  # "weight", "bias", "running_mean", "running_var"
    module: nn.Module | None  # None when read from a state dict or a file
    pads: tuple[int, int, int, int]  # (left, right, top, bottom) of a ZeroPad2d just before

    @property
    def label(self) -> str:
        kind = f" ({type(self.module).__name__})" if self.module is not None else ""
        return repr(self.name) + kind


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value if value.dtype == torch.float64 else value.float()).numpy()
    return np.asarray(value)


def _module_order(prefixes: list[str]) -> list[str]:
    """Module paths in the order of their modules: numbered siblings (``features.2``,
    ``features.10``) by number, named ones in the order they first appear.

    A ``.safetensors`` file returns its keys sorted as strings (``10.weight`` before
    ``4.weight``); a state dict from ``module.state_dict()`` is already in this order.
    """
    first_seen: dict[tuple[str, ...], int] = {}
    for prefix in prefixes:
        parts = tuple(prefix.split("."))
        for depth in range(1, len(parts) + 1):
            first_seen.setdefault(parts[:depth], len(first_seen))

    def key(prefix: str) -> tuple:
        parts = prefix.split(".")
        return tuple((0, int(p), 0) if p.isdigit() else (1, 0, first_seen[tuple(parts[:d + 1])])
                     for d, p in enumerate(parts))

    return sorted(prefixes, key=key)


def _from_state_dict(state: Mapping[str, Any]) -> list[Source]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        prefix, _, leaf = str(key).rpartition(".")
        if leaf != "num_batches_tracked":
            groups.setdefault(prefix, {})[leaf] = _numpy(value)
    return [Source(name, groups[name], None, (0, 0, 0, 0)) for name in _module_order([*groups])]


def _from_module(module: nn.Module) -> list[Source]:
    sources: list[Source] = []
    pads = (0, 0, 0, 0)
    for name, mod in module.named_modules():
        own = dict(mod.named_parameters(recurse=False))
        own.update(mod.named_buffers(recurse=False))
        own.pop("num_batches_tracked", None)
        if own:
            sources.append(Source(name, {k: _numpy(v) for k, v in own.items()}, mod, pads))
        if type(mod) is nn.ZeroPad2d:  # the padding of the Conv2d right after it, if any
            left, right, top, bottom = mod.padding
            pads = (left, right, top, bottom)
        elif own or not list(mod.children()):
            pads = (0, 0, 0, 0)
    return sources


def read(source: Any) -> list[Source]:
    if isinstance(source, nn.Module):
        return _from_module(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            source = load_file(path)
        else:
            try:
                source = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError and friends: refuse, explain
                raise ValueError(f"cnnumpy.torch.from_torch: {path!r} is not a state_dict that "
                                 f"loads with weights_only=True (save model.state_dict(), not "
                                 f"the model): {exc}") from None
    if isinstance(source, Mapping):
        return _from_state_dict(source)
    raise TypeError("cnnumpy.torch.from_torch: expected a torch.nn.Module, a state_dict or the "
                    f"path of a .safetensors/.pt file, received {type(source).__name__}")
