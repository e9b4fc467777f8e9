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


def test_the_core_install_reads_images_so_predict_and_serve_work_after_pip_install():
    # `pip install cnnumpy` then `cnnumpy serve` (the shipped model, images drawn or dropped)
    # and `cnnumpy predict MODEL photo.png` must work without an extra.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("=")[0].strip().lower() for d in project["dependencies"]]
    assert "pillow" in names
    heavy = {"torch", "onnx", "onnxruntime", "matplotlib", "numba", "mpi4py"}
    assert not heavy & set(names), "heavy packages stay optional extras"
