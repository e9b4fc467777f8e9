"""The README's commands are what CI runs."""

from __future__ import annotations

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_ci_runs_the_readme_test_command():
    readme, ci = _read("README.md"), _read(".ci", "run")
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    test_command = commands[1]
    assert "pytest" in test_command
    assert test_command in ci.splitlines()


def test_ci_runs_ruff_before_the_tests():
    readme, lines = _read("README.md"), _read(".ci", "run").splitlines()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    test_command = [line for line in block.splitlines() if line and not line.startswith("#")][1]
    lint = [i for i, line in enumerate(lines)
            if re.search(r"\bruff check src tests bench scripts\b", line)
            and not line.lstrip().startswith("#")]
    assert lint, ".ci/run does not run `ruff check src tests bench scripts`"
    assert lint[0] < lines.index(test_command), "ruff must run before the tests"


def test_ci_runs_mypy_before_the_tests():
    readme, lines = _read("README.md"), _read(".ci", "run").splitlines()
    pyproject = _read("pyproject.toml")
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    test_command = [line for line in block.splitlines() if line and not line.startswith("#")][1]
    check = [i for i, line in enumerate(lines)
             if re.search(r"&& mypy$", line) and not line.lstrip().startswith("#")]
    assert check, ".ci/run does not run `mypy` (its settings are in pyproject.toml)"
    assert check[0] < lines.index(test_command), "mypy must run before the tests"
    # The same mypy as the `test` extra, with strict settings that cover the package.
    ci_pin = re.search(r'"(mypy==[\d.]+)"', lines[check[0]]).group(1)
    assert f'"{ci_pin}"' in pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    settings = pyproject.split("[tool.mypy]")[1]
    assert re.search(r'^files = \["src/cnnumpy"\]$', settings, re.M)
    assert re.search(r"^strict = true$", settings, re.M)
