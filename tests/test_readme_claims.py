"""What the README says about the package matches the package: its layout, the losses that take
``from_logits``, and what augmentation layers become in PyTorch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cnnumpy
from cnnumpy import layers, losses

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _row(first_cell: str) -> str:
    return next(line for line in README.splitlines() if line.startswith(f"| {first_cell} |"))


def test_every_file_and_folder_in_the_layout_exists():
    layout = README.split("```\nsrc/cnnumpy/\n")[1].split("```")[0]
    names = re.findall(r"(?:^|\s)([a-z_]+(?:\.py|/))(?=\s|$)", layout, re.M)
    assert len(names) > 20, names
    src = ROOT / "src" / "cnnumpy"
    for name in names:
        path = src / name.rstrip("/")
        assert path.is_dir() if name.endswith("/") else path.is_file(), name


def test_the_losses_said_to_take_from_logits_take_it():
    row = _row("`cnnumpy.losses`")
    for group in row.split(";"):
        names = re.findall(r"`([A-Z]\w+)`", group)
        takes = "from_logits" in group
        assert names
        for name in names:
            loss = getattr(losses, name)
            if takes:
                assert loss(from_logits=True).from_logits is True
            else:
                with pytest.raises(TypeError):
                    loss(from_logits=True)


def test_random_crop_in_pytorch_is_the_module_the_readme_names():
    pytest.importorskip("torch")
    from cnnumpy.torch import to_torch

    model = cnnumpy.Sequential([layers.RandomCrop(6, 6, input_shape=(8, 8, 1)), layers.Flatten(),
                                layers.Dense(2)])
    model.build()
    module = type(to_torch(model)[0]).__name__
    row = _row("`Dropout`, augmentation layers")
    torch_cell = row.split("|")[3]
    assert re.search(rf"`RandomCrop`: `{module}`", torch_cell), (module, torch_cell)
