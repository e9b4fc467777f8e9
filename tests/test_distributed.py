"""Data-parallel training over MPI, run for real with ``mpirun`` (Open MPI) subprocesses.

Without MPI the tests that need it skip, except when ``CNNUMPY_REQUIRE_MPI=1`` (CI sets it):
then they fail, so a CI run without MPI cannot pass.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import cnnumpy
from cnnumpy import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi", "worker.py")
MPIRUN = shutil.which("mpirun")


def _load_worker():
    spec = importlib.util.spec_from_file_location("mpi_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _need_mpi() -> None:
    missing = [what for what, ok in (("mpirun", MPIRUN is not None),
                                     ("mpi4py", importlib.util.find_spec("mpi4py") is not None))
               if not ok]
    if missing:
        message = f"MPI tests need {' and '.join(missing)} (apt-get install openmpi-bin " \
                  'libopenmpi-dev; pip install "cnnumpy[mpi]")'
        if os.environ.get("CNNUMPY_REQUIRE_MPI") == "1":
            pytest.fail(message)
        pytest.skip(message)


def mpirun(ranks: int, args: list[str], *, tcp: bool = False, env: dict | None = None,
           timeout: float = 60, module: bool = False) -> tuple[subprocess.CompletedProcess, float]:
    """Run the worker (or ``python -m cnnumpy``) on ``ranks`` ranks; return it and its time."""
    _need_mpi()
    cmd = [MPIRUN, "-n", str(ranks), "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if tcp:  # the gradients cross real TCP sockets, not shared memory
        cmd += ["--mca", "btl", "tcp,self"]
    cmd += [sys.executable, *(["-m", "cnnumpy"] if module else [WORKER]), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", **(env or {})}
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    return proc, time.monotonic() - start


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def _ranks(out, ranks: int) -> tuple[list[dict], list[dict]]:
    weights = [dict(np.load(out / f"rank-{r}.npz")) for r in range(ranks)]
    logs = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(ranks)]
    return weights, logs


def _assert_bit_identical(weights: list[dict]) -> None:
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        for key, value in weights[0].items():
            assert np.array_equal(other[key], value), key


def _reference(dtype: str, batch: int, epochs: int, val_split: float, n: int = 26,
               kind: str = "plain") -> tuple:
    """One process, batch ``K * b``, seed 7 (rank 0's seed in the worker)."""
    cnnumpy.set_seed(7)
    x, y = worker.make_data(n, dtype)
    model = worker.make_model(kind, dtype)
    history = model.fit(x, y, epochs=epochs, batch_size=batch, validation_split=val_split,
                        verbose=0)
    return worker.flat_weights(model, f"{dtype}/"), history.history


def _assert_equivalent(weights: dict, history: dict, dtype: str, batch: int, epochs: int,
                       val_split: float, tol: float, kind: str = "plain") -> None:
    ref_weights, ref_history = _reference(dtype, batch, epochs, val_split, kind=kind)
    for key, value in ref_weights.items():
        np.testing.assert_allclose(weights[key], value, rtol=tol, atol=tol, err_msg=key)
    assert history.keys() == ref_history.keys()
    for key, values in ref_history.items():
        np.testing.assert_allclose(history[key], values, rtol=tol, atol=tol, err_msg=key)


# ----- without MPI ---------------------------------------------------------------------------
def test_importing_cnnumpy_does_not_import_mpi4py():
    code = "import sys, cnnumpy, cnnumpy.distributed as d; print(d.size(), 'mpi4py' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in distributed._LAUNCHER_VARS}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env, check=True)
    assert out.stdout.split() == ["1", "False"]


def test_cli_under_a_launcher_without_mpi4py_prints_one_line_not_a_traceback():
    code = ("import sys; sys.modules['mpi4py'] = None; from cnnumpy.cli import main; "
            "sys.exit(main(['train', '--distributed']))")
    env = {**os.environ, "CNNUMPY_MPI": "1"}  # as if mpirun had started it
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "cnnumpy train: error: cnnumpy.distributed: this process was started by an MPI "
        'launcher but mpi4py is not installed; pip install "cnnumpy[mpi]"']


def test_without_mpi_distributed_fit_is_ordinary_training():
    assert (distributed.size(), distributed.rank(), distributed.is_root()) == (1, 0, True)
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(distributed.allreduce_mean(a), a)
    np.testing.assert_array_equal(distributed.broadcast(a), a)
    results = []
    for flag in (False, True):
        cnnumpy.set_seed(3)
        x, y = worker.make_data(20, "float64")
        model = worker.make_model("dropout_bn", "float64")
        model.fit(x, y, epochs=2, batch_size=6, validation_split=0.2, verbose=0,
                  distributed=flag)
        results.append(worker.flat_weights(model, ""))
    _assert_bit_identical(results)


def test_pack_unpack_round_trip():
    arrays = [np.arange(6.0).reshape(2, 3), np.ones((4,))]
    buffer = distributed.pack(arrays, [2.5, 3.0], np.float64)
    assert buffer.shape == (12,)
    back, extra = distributed.unpack(buffer, arrays)
    for a, b in zip(arrays, back, strict=True):
        np.testing.assert_array_equal(a, b)
    assert extra == [2.5, 3.0]


# ----- equivalence with one process ----------------------------------------------------------
def test_two_ranks_over_tcp_match_one_process_and_stop_together(tmp_path):
    # 26 samples, 20 for training: global batches of 8, 8 and 4 (shares of 2 in the last).
    # A callback asks to stop after epoch 2 on the last rank only: every rank stops there.
    proc, _ = mpirun(2, ["--out", str(tmp_path), "--dtypes", "float64,float32", "--batch", "4",
                         "--epochs", "5", "--val-split", "0.2", "--stop-after", "1"], tcp=True)
    _ok(proc)
    weights, logs = _ranks(tmp_path, 2)
    _assert_bit_identical(weights)
    history = logs[0]["history"]
    assert len(history["float64"]["loss"]) == 2
    _assert_equivalent(weights[0], history["float64"], "float64", 8, 2, 0.2, 1e-10)
    _assert_equivalent(weights[0], history["float32"], "float32", 8, 2, 0.2, 2e-5)
    assert proc.stdout.count("Epoch 2/5") == 2  # rank 0 alone prints, once per dtype


def test_four_ranks_match_one_process_with_uneven_shares(tmp_path):
    # 26 samples, batch 3 per rank: global batches of 12, 12 and 2 (two ranks get nothing).
    proc, _ = mpirun(4, ["--out", str(tmp_path), "--batch", "3", "--epochs", "2"])
    _ok(proc)
    weights, logs = _ranks(tmp_path, 4)
    _assert_bit_identical(weights)
    _assert_equivalent(weights[0], logs[0]["history"]["float64"], "float64", 12, 2, 0.0, 1e-10)


def test_a_graph_model_on_two_ranks_matches_one_process(tmp_path):
    # cnnumpy.Model (a residual block) through fit(distributed=True): the same as Sequential.
    proc, _ = mpirun(2, ["--out", str(tmp_path), "--kind", "graph", "--batch", "4",
                         "--epochs", "2", "--val-split", "0.2"])
    _ok(proc)
    weights, logs = _ranks(tmp_path, 2)
    _assert_bit_identical(weights)
    _assert_equivalent(weights[0], logs[0]["history"]["float64"], "float64", 8, 2, 0.2, 1e-10,
                       kind="graph")


# ----- dropout, batch normalization, checkpoints and resuming --------------------------------
def test_dropout_batchnorm_identical_weights_rank0_checkpoints_and_resume(tmp_path):
    # 20 training samples, 3 per rank on 3 ranks: the last global batch has 2 samples.
    common = ["--kind", "dropout_bn", "--dtypes", "float32", "--n", "25", "--batch", "3",
              "--val-split", "0.2", "--epochs", "3"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    full.mkdir()
    resumed.mkdir()
    proc, _ = mpirun(3, ["--out", str(full), "--checkpoints", *common])
    _ok(proc)
    weights, logs = _ranks(full, 3)
    _assert_bit_identical(weights)  # weights, BN moving statistics, optimizer slots
    moving = weights[0]["float32/1.moving_mean"]
    assert np.all(moving != 0)  # the moving statistics did move
    expected = [f"ckpt-{e}.safetensors" for e in (1, 2, 3)]
    assert logs[0]["writes"] == expected
    assert logs[1]["writes"] == logs[2]["writes"] == []
    assert sorted(p.name for p in full.glob("ckpt-*")) == expected
    assert not list(full.glob(".tmp-*"))  # atomic writes leave no temporary files
    assert len((full / "log.csv").read_text().splitlines()) == 4  # header + 3 epochs

    proc, _ = mpirun(3, ["--out", str(resumed), "--resume", str(full / "ckpt-2.safetensors"),
                         *common])
    _ok(proc)
    resumed_weights, resumed_logs = _ranks(resumed, 3)
    _assert_bit_identical(resumed_weights)
    _assert_bit_identical([weights[0], resumed_weights[0]])  # as if never interrupted
    assert resumed_logs[0]["history"]["float32"]["loss"] == \
        logs[0]["history"]["float32"]["loss"][2:]


# ----- faults: never a silent hang -----------------------------------------------------------
def test_a_raising_rank_stops_every_rank_with_its_error(tmp_path):
    proc, elapsed = mpirun(2, ["--out", str(tmp_path), "--fault", "raise", "--epochs", "3"])
    assert proc.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in proc.stderr
    assert "aborting all ranks" in proc.stderr
    assert elapsed < 60
    assert not list(tmp_path.glob("rank-*"))  # no rank went on to finish


def test_a_killed_rank_ends_the_job_promptly(tmp_path):
    proc, elapsed = mpirun(2, ["--out", str(tmp_path), "--fault", "kill", "--epochs", "3"])
    assert proc.returncode != 0
    assert elapsed < 60
    assert not list(tmp_path.glob("rank-*"))


def test_a_hanging_rank_trips_the_collective_timeout(tmp_path):
    proc, elapsed = mpirun(2, ["--out", str(tmp_path), "--fault", "hang", "--epochs", "3"],
                           env={"CNNUMPY_MPI_TIMEOUT": "2"})
    assert proc.returncode != 0
    assert "waited more than 2 s" in proc.stderr
    assert elapsed < 30


# ----- the command line ----------------------------------------------------------------------
def _write_idx(folder, n: int) -> None:
    data = np.random.default_rng(0)
    images = data.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = data.integers(0, 10, size=n, dtype=np.uint8)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(np.array([2051, n, 28, 28], dtype=">u4").tobytes() + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(np.array([2049, n], dtype=">u4").tobytes() + labels.tobytes())


def test_cli_train_distributed(tmp_path):
    from cnnumpy import cli

    if "--distributed" not in cli.build_parser()._subparsers._group_actions[0].choices[
            "train"].format_help():
        pytest.fail("cnnumpy train has no --distributed flag")
    _write_idx(tmp_path, 48)
    proc, _ = mpirun(2, ["train", "--distributed", "--data", str(tmp_path), "--epochs", "2",
                         "--batch-size", "8", "--out", str(tmp_path / "m.safetensors"),
                         "--checkpoint-dir", str(tmp_path / "ck")], module=True)
    _ok(proc)
    # without t10k files a sixth (8 of 48) is held out as the test set; rank 0 alone prints
    assert proc.stdout.count("holding out the last 8 images") == 1
    assert proc.stdout.count("Training on 40 images") == 1
    # Open MPI gives ranks a zero-width terminal: one line per epoch there, not a blank bar
    epochs = [line for line in proc.stdout.replace("\r", "\n").splitlines()
              if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["Epoch 1/2", "Epoch 2/2"], proc.stdout
    assert proc.stdout.count("Saved model") == 1
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == \
        ["epoch-001.safetensors", "epoch-002.safetensors"]
    model = cnnumpy.load_model(str(tmp_path / "m.safetensors"))
    assert model.epoch == 2
