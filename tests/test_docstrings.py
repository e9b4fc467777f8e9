"""Every public name has a docstring, and the examples in docstrings run (doctests)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import cnnumpy

# Modules that are not public API (the CLI, fast paths, converters' and the server's internals);
# the same list as the narrower mypy setting in pyproject.toml. Modules whose name starts with
# an underscore are internal too.
INTERNAL = {
    "cnnumpy.__main__", "cnnumpy.cli", "cnnumpy.cli_args", "cnnumpy.cli_data",
    "cnnumpy.cli_train", "cnnumpy.graph_run", "cnnumpy.passes", "cnnumpy.shards",
    "cnnumpy.serve.api", "cnnumpy.serve.explain", "cnnumpy.serve.server", "cnnumpy.summary",
    "cnnumpy.files",
}


def _public_modules() -> list[str]:
    names = ["cnnumpy"]
    for info in pkgutil.walk_packages(cnnumpy.__path__, "cnnumpy."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name in INTERNAL \
                or info.name.startswith("cnnumpy.functional.fast"):
            continue
        names.append(info.name)
    return names


PUBLIC_MODULES = _public_modules()


def _public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, obj in vars(module).items() if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__]


def _undocumented(module) -> list[str]:
    missing = [] if (module.__doc__ or "").strip() else [module.__name__]
    for name in _public_names(module):
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants and submodules (checked as modules)
        if not (obj.__doc__ or "").strip():
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                is_property = isinstance(value, property)
                fn = value.fget if is_property else getattr(value, "__func__", value)
                if attr.startswith("_") or not (inspect.isfunction(fn) or is_property):
                    continue
                if not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                    missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


def test_the_public_modules_are_found():
    assert {"cnnumpy", "cnnumpy.layers", "cnnumpy.losses", "cnnumpy.testing",
            "cnnumpy.datasets.images", "cnnumpy.functional.conv"} <= set(PUBLIC_MODULES)
    assert not [m for m in PUBLIC_MODULES if "fast" in m or "._" in m]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(name):
    assert _undocumented(importlib.import_module(name)) == []


def test_the_check_finds_a_missing_docstring():
    class Documented:
        """A class."""

        def method(self):
            pass

    module = type(cnnumpy)("fake")
    module.__doc__ = "A module."
    module.__all__ = ["Documented"]
    module.Documented = Documented
    assert _undocumented(module) == ["fake.Documented.method"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with np.printoptions(legacy=False):
        for test in finder.find(module, name, extraglobs={"np": np, "cnnumpy": cnnumpy}):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
