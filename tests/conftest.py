"""Test-wide settings.

Hypothesis runs derandomized and without deadlines, so CI is stable.

Strict skips: in CI (``CI=true``, which CI services set) or with ``CNNUMPY_STRICT_SKIPS=1``, a
run where a test skips for a reason not listed in :data:`EXPECTED_SKIPS` fails, listing those
skips. CI installs every extra (``.[test]``) and Open MPI, so a missing dependency there is a
broken setup, not a reason to pass with fewer tests.
"""

from __future__ import annotations

import os
import re

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          print_blob=True)
settings.load_profile("ci")

STRICT = os.environ.get("CI", "").lower() in ("true", "1") \
    or os.environ.get("CNNUMPY_STRICT_SKIPS") == "1"

EXPECTED_SKIPS = [
    # tests/test_output_folder.py checks full disks and read-only folders with Linux
    # privileges a machine may withhold (dropping root's capabilities, a private tmpfs mount):
    # what it can do depends on the machine, not on what is installed.
    r"Linux capabilities and mounts",
    r"cannot drop the permission-bypassing capabilities here",
    r"a chmod 555 folder is still writable to a subprocess here",
    r"cannot mount a tmpfs here",
]
"""Regular expressions (``re.search``) for the skip reasons a strict run accepts."""

if os.environ.get("CNNUMPY_COMPILED") == "0":
    # Numba switched off: the tests of the compiled kernels skip by design (this is how
    # tests/functional/test_compiled_switch.py reruns the kernel and layer tests).
    EXPECTED_SKIPS += [r"Numba is not installed", r"without Numba the whole suite"]

_unexpected: list[str] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _record(report) -> None:
    if not (STRICT and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not any(re.search(pattern, reason) for pattern in EXPECTED_SKIPS):
        _unexpected.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report) -> None:
    _record(report)  # a module that skips as a whole (pytest.importorskip at the top)


def pytest_runtest_logreport(report) -> None:
    _record(report)


def pytest_sessionfinish(session, exitstatus) -> None:
    if _unexpected and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:
    if _unexpected:
        terminalreporter.section("unexpected skips (strict: CI=true or CNNUMPY_STRICT_SKIPS=1)",
                                 red=True)
        for line in _unexpected:
            terminalreporter.line(line)
        terminalreporter.line(f"{len(_unexpected)} test(s) skipped for reasons not in "
                              "EXPECTED_SKIPS in tests/conftest.py: install what they need, "
                              "or add the reason there with a comment saying why")
