"""backend.keep_freed_memory: freed arrays' memory reused without new page faults (glibc), and
``cnnumpy train`` asks for it."""

from __future__ import annotations

import platform
import subprocess
import sys

from cnnumpy import backend, cli

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

ALLOCATE = r"""
import resource, sys
import numpy as np
from cnnumpy import backend
print(backend.keep_freed_memory() if sys.argv[1] == "keep" else None)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):  # as a training step: the same large arrays made and freed each time
    arrays = [np.ones(2**21 + 1000 * k, np.float32) for k in range(10)]
    del arrays
before = faults()
for _ in range(10):
    arrays = [np.ones(2**21 + 1000 * k, np.float32) for k in range(10)]
    del arrays
print(faults() - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", ALLOCATE, mode], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


def test_freed_memory_is_reused_without_page_faults():
    if not GLIBC:  # elsewhere the call changes nothing and says so
        assert backend.keep_freed_memory() is False
        return
    applied, kept = page_faults("keep")
    assert applied == "True"
    _, default = page_faults("default")
    # 80 MiB of arrays made ten times: about 20,000 new pages each time by default
    assert default > 20 * kept and default > 10_000, (default, kept)


def test_cnnumpy_train_asks_for_it(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(backend, "keep_freed_memory", lambda: calls.append(1) or True)
    # a missing data folder: the run stops right after the setting
    status = cli.main(["train", "--data", str(tmp_path / "missing"), "--out",
                       str(tmp_path / "m.safetensors")])
    assert status == 1 and calls == [1]
    assert "missing" in capsys.readouterr().err
