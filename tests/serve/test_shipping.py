"""``cnnumpy serve`` as installed: its files are package data, ``--open`` opens the page, and
the script that trains the shipped model makes it again."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnumpy import serve

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "cnnumpy" / "serve"


def test_every_file_the_server_needs_is_declared_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["cnnumpy.serve"]
    declared = {path for pattern in patterns for path in PACKAGE.glob(pattern)}  # as setuptools
    needed = [p for folder in ("static", "data") for p in (PACKAGE / folder).iterdir()
              if p.is_file()]
    assert PACKAGE / "data" / "digits.safetensors" in needed
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in needed}
    assert set(needed) <= declared, sorted(str(p) for p in set(needed) - declared)


def test_serve_open_opens_the_printed_address(tmp_path):
    opened = tmp_path / "opened.txt"
    browser = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'w').write(sys.argv[2])\" " \
              f"{opened} %s"  # what webbrowser runs for $BROWSER
    env = {**os.environ, "BROWSER": browser}
    process = subprocess.Popen([sys.executable, "-m", "cnnumpy", "serve", "--port", "0",
                                "--open"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)", process.stdout.readline()).group(1)
        for _ in range(100):
            if opened.exists() and opened.read_text():
                break
            time.sleep(0.1)
        assert opened.read_text() == url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _header(path: str | Path) -> dict:
    raw = Path(path).read_bytes()
    return json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])


@pytest.mark.slow
def test_the_training_script_reproduces_the_shipped_model(tmp_path):
    from safetensors.numpy import load_file

    out = tmp_path / "digits.safetensors"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_serve_model.py"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"Test accuracy: {serve.DEFAULT_MODEL_ACCURACY:.4f}" in done.stdout
    made, shipped = load_file(out), load_file(serve.default_model_path())
    assert sorted(made) == sorted(shipped)
    for name, value in shipped.items():
        np.testing.assert_array_equal(made[name], value, err_msg=name)
    assert _header(out) == _header(serve.default_model_path())  # the same metadata too
