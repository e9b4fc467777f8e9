"""cnnumpy against PyTorch on this CPU, side by side in one process.

    python bench/run.py            # every model, train at batch 32/64/256, inference at 256
    python bench/run.py --quick    # 15 s idle: batch 64 training, 256 inference
    python bench/run.py --models resnet20,mobilenet --quick   # only the chosen models
    python bench/run.py --env unset  # only the run with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset

Each configuration builds the model in cnnumpy and in PyTorch (NCHW and ``channels_last``),
with the same shapes and optimizer (Adam), warms each up, then times them interleaved (a
block of untimed and then ``BLOCK`` timed steps of each in turn) and reports medians.
The graph models (``resnet20``, ``mobilenet``: see ``models.py``) train at batch 32, 64 and 128.
Training is a full step (forward, loss, backward, update); inference is a forward pass in
inference mode. GFLOP/s count a training step as three forward passes; "peak" is the best
float32 matrix product NumPy reaches here, measured first.
Memory is the peak allocation of one cnnumpy training step (tracemalloc) and the growth of
the process's resident set during one step (VmHWM after resetting it) for each framework;
without ``--quick``, ResNet-20's batch-128 step (the LeNet-like model's at 256 when resnet20 is
not run) is also measured in a fresh process per framework (bench/memory.py), the comparison
to trust.

PyTorch is imported here only and gets the CPUs this process may use. cnnumpy runs its
kernels on ``--threads`` threads (default: the same CPUs) and, with threadpoolctl installed,
holds the BLAS at one thread during each step; ``--threads 1`` runs cnnumpy on one thread,
its BLAS products included. Both run with the C allocator's defaults, as in a plain script;
``--keep-freed-memory`` first calls ``backend.keep_freed_memory()`` (as ``cnnumpy train``
does), which applies to both frameworks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (  # noqa: E402
    blas_description,
    compiled_description,
    machine_description,
    peak_matmul_gflops,
    usable_cpus,
)
from memory import FRAMEWORKS  # noqa: E402
from memory import compare as compare_memory  # noqa: E402
from memory import report as report_memory  # noqa: E402
from models import (  # noqa: E402
    GRAPHS,
    MODELS,
    build_cnnumpy,
    build_torch,
    forward_flops,
    shape_and_classes,
)

from cnnumpy import backend  # noqa: E402

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BLOCK = 2
"""Timed steps in a row of one framework before the next framework's turn."""
SWITCH_S = 0.03
"""Seconds of untimed steps at the start of each framework's turn. Both frameworks leave
threads spinning for a while after a step (PyTorch's OpenMP workers, OpenBLAS's); timing the
first steps after a switch would measure each partly against the other's spinning threads,
which never happens in real training, where one framework runs step after step."""


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rss_growth(fn: Any) -> float | None:
    """MiB the resident set grew to during ``fn()`` (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident set
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) / 1024
    except OSError:
        return None


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(key)


def make_step(framework: str, name: str, batch: int, train: bool) -> Any:
    """A zero-argument function running one step of ``framework`` (one of ``FRAMEWORKS``)
    on its own copy of the same data: a training step, or inference. PyTorch is imported only
    for a PyTorch framework."""
    shape, classes = shape_and_classes(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    y_np = y.reshape(-1, 1).astype(np.float32) if classes == 2 else y
    if framework == "cnnumpy":
        model, _, _ = build_cnnumpy(name)

        def cnnumpy_step() -> None:
            # BLAS at one thread for the whole step while cnnumpy runs its own threads (what
            # train_on_batch and predict do themselves; nesting is harmless)
            with backend.single_threaded_blas():
                if train:
                    model.train_on_batch(x, y_np)
                else:
                    model.predict(x, batch_size=batch)

        return cnnumpy_step
    import torch

    fmt = torch.channels_last if framework == "torch channels_last" else torch.contiguous_format
    module, opt, loss_fn = build_torch(name)
    module = module.to(memory_format=fmt)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    xt = xt.contiguous(memory_format=fmt)
    yt = torch.from_numpy(y_np if classes == 2 else y.astype(np.int64))
    if train:
        def torch_step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(module(xt), yt).backward()
            opt.step()
    else:
        module.eval()

        def torch_step() -> None:
            with torch.inference_mode():
                module(xt)
    return torch_step


def make_runners(name: str, batch: int, train: bool) -> dict[str, Any]:
    """One zero-argument step function per framework, each on its own copy of the data."""
    return {fw: make_step(fw, name, batch, train) for fw in FRAMEWORKS}


def bench_config(name: str, batch: int, train: bool, repeats: int, warmup: int) -> dict:
    runners = make_runners(name, batch, train)
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):  # interleaved: a short block of steps of each framework in turn
        for key, fn in runners.items():
            start = time.perf_counter()
            fn()  # untimed, for SWITCH_S at least: the other framework's idle threads spin
            while time.perf_counter() - start < SWITCH_S:
                fn()
            times[key].extend(_timed(fn) for _ in range(BLOCK))
    result = {"model": name, "batch": batch, "mode": "train" if train else "infer",
              "img_per_s": {k: batch / statistics.median(v) for k, v in times.items()}}
    if train:
        tracemalloc.start()
        runners["cnnumpy"]()
        result["cnnumpy_traced_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        result["rss_growth_mib"] = {k: _rss_growth(fn) for k, fn in runners.items()}
    return result


def train_batches(name: str, quick: bool) -> tuple[int, ...]:
    """The training batch sizes of a model: 64 when quick, else 32, 64 and 256 (128 for the
    graph models)."""
    return (64,) if quick else (32, 64, 128 if name in GRAPHS else 256)


def run_all(quick: bool, repeats: int | None, names: list[str] | None = None) -> dict:
    import torch

    torch.set_num_threads(usable_cpus())
    peak = peak_matmul_gflops()
    names = names or MODELS
    configs = [(m, b, True) for m in names for b in train_batches(m, quick)]
    configs += [(m, 256, False) for m in names]
    repeats = repeats or (5 if quick else 15)
    results = []
    for name, batch, train in configs:
        res = bench_config(name, batch, train, repeats, warmup=2 if quick else 3)
        flops = forward_flops(name) * (3 if train else 1)
        res["cnnumpy_gflops"] = res["img_per_s"]["cnnumpy"] * flops / 1e9
        res["fraction_of_peak"] = res["cnnumpy_gflops"] / peak
        results.append(res)
        print(_row(res), flush=True)
    memory = None
    if not quick:  # each framework in a fresh process: see bench/memory.py
        name, batch = ("resnet20", 128) if "resnet20" in names else ("lenet", 256)
        memory = {"model": name, "batch": batch, "results": compare_memory(name, batch)}
        print(report_memory(name, batch, memory["results"]), flush=True)
    env = {k: os.environ.get(k) for k in BLAS_VARS}
    return {"memory": memory, "date": datetime.date.today().isoformat(),
            "machine": machine_description(), "env": env,
            "blas": blas_description(), "torch": torch.__version__, "numpy": np.__version__,
            "compiled": compiled_description(),
            "torch_threads": torch.get_num_threads(),
            "cnnumpy_threads": backend.get_num_threads(), "peak_matmul_gflops": peak,
            "results": results}


HEADER = ("| model | mode | batch | cnnumpy img/s | torch NCHW | torch channels_last | "
          "ratio NCHW | ratio CL | cnnumpy GFLOP/s | % peak | mem MiB (traced / RSS cnnumpy / "
          "RSS torch NCHW) |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
          "---: | --- |")


def _row(res: dict) -> str:
    ips = res["img_per_s"]
    c, t1, t2 = ips["cnnumpy"], ips["torch NCHW"], ips["torch channels_last"]
    mem = ""
    if "rss_growth_mib" in res:
        rss = res["rss_growth_mib"]
        fmt = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
        mem = (f"{res['cnnumpy_traced_mib']:.0f} / {fmt(rss['cnnumpy'])} / "
               f"{fmt(rss['torch NCHW'])}")
    return (f"| {res['model']} | {res['mode']} | {res['batch']} | {c:,.0f} | {t1:,.0f} | "
            f"{t2:,.0f} | {c / t1:.2f} | {c / t2:.2f} | {res['cnnumpy_gflops']:.1f} | "
            f"{100 * res['fraction_of_peak']:.0f} | {mem} |")


def report(summary: dict) -> str:
    env = ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in summary["env"].items())
    lines = [f"date {summary['date']}; {summary['machine']}; numpy {summary['numpy']}, torch "
             f"{summary['torch']} ({summary['torch_threads']} threads), cnnumpy "
             f"{summary['cnnumpy_threads']} threads",
             f"{env}; BLAS: {summary['blas']}; cnnumpy compiled kernels: "
             f"{summary.get('compiled', 'n/a')}",
             f"peak float32 matmul (NumPy, 2048^2): {summary['peak_matmul_gflops']:.0f} GFLOP/s",
             "", HEADER, *(_row(r) for r in summary["results"])]
    if summary.get("memory"):
        m = summary["memory"]
        lines += ["", report_memory(m["model"], m["batch"], m["results"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 64 training only, fewer "
                        "repeats (about 15 s on an idle machine)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per framework")
    parser.add_argument("--env", choices=("both", "given", "unset"), default="both",
                        help="run with the environment as given, with OPENBLAS_CORETYPE and "
                        "OPENBLAS_L2_SIZE unset (in a child process), or both")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--threads", type=int, default=None, help="cnnumpy's threads (default: "
                        "the CPUs this process may use; PyTorch always gets those)")
    parser.add_argument("--models", default=None, help="comma-separated models to run (default "
                        f"all: {','.join(MODELS)})")
    parser.add_argument("--keep-freed-memory", action="store_true", help="call "
                        "backend.keep_freed_memory() first, as cnnumpy train does (it is "
                        "process-wide: PyTorch gets it too, and gains more at large batches)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the unset run
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else None
    for name in names or ():
        shape_and_classes(name)  # a clear error for an unknown name
    backend.set_num_threads(args.threads)
    if args.keep_freed_memory:
        backend.keep_freed_memory()
    runs = []
    if args.env in ("both", "given"):
        if not args.child:
            print("## environment as given\n")
        print("(each row as it finishes; the report follows)", flush=True)
        runs.append(run_all(args.quick, args.repeats, names))
        print("\n" + report(runs[-1]) + "\n", flush=True)
    if args.env == "unset" or (args.env == "both" and any(os.environ.get(k) for k in BLAS_VARS)):
        print("## OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (child process)\n", flush=True)
        child_env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
        with tempfile.TemporaryDirectory() as tmp:
            child_json = Path(tmp) / "unset.json"
            cmd = [sys.executable, __file__, "--env", "given", "--child", "--json", str(child_json)]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--repeats", str(args.repeats)] if args.repeats else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--models", args.models] if args.models else []
            cmd += ["--keep-freed-memory"] if args.keep_freed_memory else []
            subprocess.run(cmd, env=child_env, check=True)
            runs += json.loads(child_json.read_text())
    elif args.env == "both":
        print("(OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are not set: the run above is the "
              "unset run too)")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
