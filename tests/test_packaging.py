"""The licence travels with the package: a LICENSE file, declared with the bundled data's note."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_the_licence_files_exist_and_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license-files"] == ["LICENSE", "src/cnnumpy/datasets/data/LICENSE.md",
                                        "src/cnnumpy/datasets/data/fashion/LICENSE.md"]
    assert project["license"] == "MIT AND CC-BY-SA-3.0"  # the code, and the bundled digits
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Permission is hereby granted" in licence
    assert "CC BY-SA 3.0" in (ROOT / "src/cnnumpy/datasets/data/LICENSE.md").read_text()
    fashion = (ROOT / "src/cnnumpy/datasets/data/fashion/LICENSE.md").read_text()
    assert "Zalando Research" in fashion and "MIT licence" in fashion
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["requires"] == ["setuptools>=77"]  # the first to read license-files
