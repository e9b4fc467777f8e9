"""Peak memory of a training step, cnnumpy against PyTorch, each in a fresh process.

    python bench/memory.py [--model lenet] [--batch 256] [--steps 3]

Each framework runs in its own new process (cnnumpy's without PyTorch imported): it builds
the model, the optimizer and one batch of data (``run.make_step``, as the timing benchmark
does; with ``--keep-freed-memory`` both first call ``backend.keep_freed_memory()``, as
``cnnumpy train`` does), reads its resident set (VmRSS), trains for
``--steps`` steps and reads its peak resident set (VmHWM). The difference is the memory the
training steps needed on top of the program, the model and the data; the report prints it
for each framework and their ratio. Linux only (it reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys
sys.path.insert(0, {here!r})

def kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])

framework = {framework!r}
if {keep_freed}:
    from cnnumpy import backend
    backend.keep_freed_memory()
if framework != "cnnumpy":
    import torch
    torch.set_num_threads({threads})
from run import make_step
step = make_step(framework, {name!r}, {batch}, train=True)
before = kib("VmRSS")
for _ in range({steps}):
    step()
print(json.dumps({{"before_mib": before / 1024, "peak_mib": kib("VmHWM") / 1024}}))
"""

FRAMEWORKS = ("cnnumpy", "torch NCHW", "torch channels_last")


def measure(name: str, batch: int, steps: int, framework: str, threads: int,
            keep_freed: bool = False) -> dict:
    """Run one framework's training steps in a fresh process; return its RSS figures."""
    code = CHILD.format(here=str(HERE), name=name, batch=batch, steps=steps,
                        framework=framework, threads=threads, keep_freed=keep_freed)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["step_mib"] = result["peak_mib"] - result["before_mib"]
    return result


def compare(name: str, batch: int, steps: int = 3, threads: int = 2,
            keep_freed: bool = False) -> dict[str, dict]:
    """Each framework's figures for one model and batch size."""
    return {fw: measure(name, batch, steps, fw, threads, keep_freed) for fw in FRAMEWORKS}


def report(name: str, batch: int, results: dict[str, dict]) -> str:
    ours = results["cnnumpy"]["step_mib"]
    lines = [f"{name}, batch {batch}: MiB above the process before training "
             "(peak RSS - RSS before the first step)"]
    for fw, r in results.items():
        ratio = "" if fw == "cnnumpy" else f"  (cnnumpy / this: {ours / r['step_mib']:.2f})"
        lines.append(f"  {fw:<20} {r['step_mib']:7.1f}{ratio}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="both frameworks' processes call backend.keep_freed_memory() "
                             "first, as cnnumpy train does")
    args = parser.parse_args()
    print(report(args.model, args.batch, compare(args.model, args.batch, args.steps,
                                                 args.threads, args.keep_freed_memory)))
