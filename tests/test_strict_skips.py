"""tests/conftest.py's strict skips: in CI, a skip whose reason is not on the list fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
TESTS = '''
import pytest

pytest.importorskip("a_module_that_is_not_installed")
'''
OTHER = '''
import pytest

def test_passes():
    pass

def test_skips_on_this_machine():
    pytest.skip("cannot mount a tmpfs here: no privileges")  # on the list

def test_skips_for_a_missing_dependency():
    pytest.skip("torch is not installed")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
'''


def run_pytest(folder: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("CI", "CNNUMPY_STRICT_SKIPS", "CNNUMPY_COMPILED")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           str(folder)], cwd=folder, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("suite")
    shutil.copy(CONFTEST, folder / "conftest.py")
    (folder / "test_missing_module.py").write_text(TESTS)
    (folder / "test_other.py").write_text(OTHER)
    return folder


@pytest.mark.parametrize("env", [{"CI": "true"}, {"CNNUMPY_STRICT_SKIPS": "1"}])
def test_an_unexpected_skip_fails_a_strict_run_and_is_listed(folder, env):
    proc = run_pytest(folder, **env)
    assert proc.returncode == 1, proc.stdout
    summary = proc.stdout.split("unexpected skips")[1]
    assert "test_other.py::test_skips_for_a_missing_dependency: torch is not installed" \
        in summary
    assert "test_missing_module.py: could not import 'a_module_that_is_not_installed'" \
        in summary
    assert "tmpfs" not in summary and "test_expected_failure" not in summary
    assert "2 test(s) skipped for reasons not in EXPECTED_SKIPS" in summary


def test_skips_pass_outside_ci(folder):
    proc = run_pytest(folder)
    assert proc.returncode == 0, proc.stdout
    assert "unexpected skips" not in proc.stdout


def test_a_strict_run_with_only_expected_skips_passes(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_numba.py").write_text(
        "import pytest\n\ndef test_compiled():\n    pytest.skip('Numba is not installed')\n")
    assert run_pytest(tmp_path, CI="true").returncode == 1  # Numba is part of .[test]
    proc = run_pytest(tmp_path, CI="true", CNNUMPY_COMPILED="0")  # switched off on purpose
    assert proc.returncode == 0, proc.stdout
