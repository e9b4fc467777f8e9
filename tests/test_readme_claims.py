"""What the README and the pages it links to say about the package match the package: the source
layout and the losses that take ``from_logits`` (docs/library.md), what augmentation layers
become in PyTorch (docs/deploy.md), and every subcommand and flag of the command line (the
README's list and docs/cli.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cnnumpy
from cnnumpy import layers, losses

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LIBRARY = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
CLI = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def _row(text: str, first_cell: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))


def test_every_file_and_folder_in_the_layout_exists():
    layout = LIBRARY.split("```\nsrc/cnnumpy/\n")[1].split("```")[0]
    names = re.findall(r"(?:^|\s)([a-z_]+(?:\.py|/))(?=\s|$)", layout, re.M)
    assert len(names) > 20, names
    src = ROOT / "src" / "cnnumpy"
    for name in names:
        path = src / name.rstrip("/")
        assert path.is_dir() if name.endswith("/") else path.is_file(), name


def test_the_losses_said_to_take_from_logits_take_it():
    row = _row(LIBRARY, "`cnnumpy.losses`")
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
    row = _row(DEPLOY, "`Dropout`, augmentation layers")
    torch_cell = row.split("|")[3]
    assert re.search(rf"`RandomCrop`: `{module}`", torch_cell), (module, torch_cell)


def _subcommands():
    from cnnumpy.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.choices and "train" in a.choices)
    return action.choices


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_and_flag_is_listed(name):
    """The README lists every subcommand with every flag; docs/cli.md gives each its section."""
    section = README.split("## The command line")[1].split("\n## ")[0]
    item = next((line for line in section.split("\n- ") if line.startswith(f"`cnnumpy {name}")),
                None)
    assert item is not None, f"the README's command line does not list `cnnumpy {name}`"
    page = CLI.split(f"## `cnnumpy {name}")[1].split("\n## ")[0]
    flags = {flag for action in _subcommands()[name]._actions for flag in action.option_strings
             if flag.startswith("--") and flag not in ("--help", "--invert")}
    for flag in sorted(flags):
        assert re.search(rf"`{flag}\b", item), f"the README's `cnnumpy {name}` lacks {flag}"
        assert re.search(rf"`{flag}\b", page), f"docs/cli.md's `cnnumpy {name}` lacks {flag}"
