"""What the benchmark ran on: the CPU, the BLAS, cnnumpy's compiled kernels, the matrix-product
peak."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def blas_description() -> str:
    """The BLAS library, its kernel (architecture) and thread count, from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see the BLAS kernel)"
    rows = [f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
            f"threads={i.get('num_threads')}" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    return "; ".join(rows) or "no BLAS found by threadpoolctl"


def compiled_description() -> str:
    """Whether cnnumpy's compiled kernels (Numba) ran, and which Numba."""
    from cnnumpy.functional.fast import compiled
    if not compiled.REQUESTED:
        return "off (CNNUMPY_COMPILED=0: pure NumPy)"
    if not compiled.AVAILABLE:
        return "off (Numba not installed: pure NumPy)"
    import numba
    return f"numba {numba.__version__}" + ("" if compiled.ENABLED else " installed, disabled")


def peak_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``size x size`` matrix product NumPy does here, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def usable_cpus() -> int:
    """The CPUs this process may run on (what PyTorch gets, and cnnumpy by default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores ({usable_cpus()} usable), Python "
            f"{platform.python_version()}")
