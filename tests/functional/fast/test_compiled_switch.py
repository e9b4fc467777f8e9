"""``CNNUMPY_COMPILED=0`` runs the pure-NumPy paths without importing Numba, with the same
results as the compiled kernels within float32 rounding, and passes the same kernel and layer
tests. (Run with ``CNNUMPY_COMPILED=0`` itself, the last test skips: no recursion.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnumpy.functional.fast import compiled

SCRIPT = """
import json, sys
import numpy as np
import cnnumpy
from cnnumpy import layers
from cnnumpy.functional.fast import compiled
cnnumpy.set_seed(0)
model = cnnumpy.Sequential([
    layers.Conv2D(16, 3, padding="same", activation="relu", input_shape=(12, 12, 3)),
    layers.Conv2D(16, 3, padding="same", activation="relu"),
    layers.MaxPool2D(2),
    layers.Conv2D(8, 5, padding="same", activation="relu"),
    layers.MaxPool2D(2),
    layers.Flatten(),
    layers.Dense(4, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy", metrics=[])
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 12, 12, 3)).astype(np.float32)
y = rng.integers(0, 4, 16)
losses = [float(model.train_on_batch(x, y)["loss"]) for _ in range(3)]
print(json.dumps({"numba_imported": "numba" in sys.modules, "enabled": compiled.ENABLED,
                  "losses": losses, "out": model.predict(x).tolist()}))
"""


def _run(compiled_flag: str) -> dict:
    env = {**os.environ, "CNNUMPY_COMPILED": compiled_flag}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_switched_off_by_the_environment_imports_no_numba_and_trains():
    off = _run("0")
    assert off["numba_imported"] is False and off["enabled"] is False
    assert np.all(np.isfinite(off["losses"])) and off["losses"][-1] < off["losses"][0]


def test_compiled_and_numpy_paths_train_alike():
    on, off = _run("1"), _run("0")
    if not on["enabled"]:  # Numba not installed: both ran the NumPy paths
        assert on == off
        return
    np.testing.assert_allclose(on["losses"], off["losses"], rtol=1e-4)
    np.testing.assert_allclose(on["out"], off["out"], rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not compiled.AVAILABLE,
                    reason="without Numba the whole suite already runs the NumPy paths")
def test_the_kernel_and_layer_tests_pass_on_the_pure_numpy_paths():
    """The fallback passes the same kernel and layer tests (the rest of the suite calls these
    kernels through the layers)."""
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "CNNUMPY_COMPILED": "0"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/functional", "tests/layers", "tests/test_passes.py"],
                          cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
