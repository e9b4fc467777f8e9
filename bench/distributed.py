"""Data-parallel training throughput on 1, 2 and 4 MPI ranks, and the time spent in allreduce.

    python bench/distributed.py                  # 1, 2 and 4 ranks, 32 images per rank
    python bench/distributed.py --ranks 1 2 --batch 64 --steps 40

Each configuration runs ``mpirun -n K python bench/distributed.py --worker ...``: every rank
trains the LeNet-like model (``cnnumpy.models.get("lenet")``, 454,922 float32 parameters) with
``fit(distributed=True)`` on synthetic 28x28 images, with the BLAS and cnnumpy's kernels held
to one thread per rank, after one warm-up epoch. Weak scaling: the batch per rank is fixed,
so K ranks process K times as many images per step. Reported: images/s over all ranks, time
per step, and the part of it spent in the gradient allreduce (rank 0's view, which includes
waiting for the slowest rank). The last lines turn the measured compute time per step and the
gradient size into the communication/computation ratio a real cluster would see.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    import cnnumpy
    from cnnumpy import backend, distributed, models

    backend.set_num_threads(1)
    cnnumpy.set_seed(0)
    k = distributed.size()
    n = args.steps * args.batch * k
    data = np.random.default_rng(0)
    x = data.random((n, 28, 28, 1), dtype=np.float32)
    y = data.integers(0, 10, size=n)
    model = models.get("lenet", (28, 28, 1), 10)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    warm = args.batch * k * 3
    model.fit(x[:warm], y[:warm], batch_size=args.batch, verbose=0, distributed=True)

    spent = [0.0, 0]
    allreduce = distributed.allreduce_sum_

    def timed(buffer):
        start = time.perf_counter()
        out = allreduce(buffer)
        spent[0] += time.perf_counter() - start
        spent[1] += 1
        return out

    distributed.allreduce_sum_ = timed
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, verbose=0, distributed=True)
    elapsed = time.perf_counter() - start
    if distributed.is_root():
        params = model.count_params()
        print(json.dumps({"ranks": k, "batch": args.batch, "steps": args.steps,
                          "images_per_s": n / elapsed, "step_ms": 1e3 * elapsed / args.steps,
                          "allreduce_ms": 1e3 * spent[0] / max(spent[1], 1),
                          "gradient_bytes": 4 * params}))


def launch(ranks: int, args: argparse.Namespace) -> dict:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("bench/distributed.py needs mpirun (apt-get install openmpi-bin) and mpi4py")
    cmd = [mpirun, "-n", str(ranks), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd += [sys.executable, os.path.abspath(__file__), "--worker", "--batch", str(args.batch),
            "--steps", str(args.steps)]
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"mpirun -n {ranks} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=32, help="images per rank per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"CPUs available: {len(os.sched_getaffinity(0))}; batch {args.batch} per rank; "
          f"{args.steps} timed steps; BLAS and kernels on 1 thread per rank")
    print(f"{'ranks':>5} {'images/s':>9} {'speedup':>8} {'step ms':>8} {'allreduce ms':>13}")
    results = [launch(k, args) for k in args.ranks]
    base = results[0]["images_per_s"]
    for r in results:
        print(f"{r['ranks']:>5} {r['images_per_s']:>9.0f} {r['images_per_s'] / base:>7.2f}x "
              f"{r['step_ms']:>8.1f} {r['allreduce_ms']:>13.2f}")
    one = next((r for r in results if r["ranks"] == 1), results[0])
    compute_s = (one["step_ms"] - one["allreduce_ms"]) / 1e3
    size = one["gradient_bytes"]
    print(f"\nGradient per step: {size / 1e6:.2f} MB; compute per step on one rank: "
          f"{1e3 * compute_s:.1f} ms")
    for name, bandwidth in (("1 GbE", 0.125e9), ("10 GbE", 1.25e9), ("100 Gb/s IB", 12.5e9)):
        # a ring allreduce moves about 2 x the buffer through each rank's link
        comm_s = 2 * size / bandwidth
        print(f"  {name:>12}: allreduce ~{1e3 * comm_s:6.1f} ms, communication/computation "
              f"{comm_s / compute_s:5.2f}, predicted efficiency without overlap "
              f"{compute_s / (compute_s + comm_s):4.0%}")


if __name__ == "__main__":
    main()
