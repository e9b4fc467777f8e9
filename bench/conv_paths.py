"""Forward/backward times of each benchmark convolution by input-gradient path (ms).

    python bench/conv_paths.py [--batch 64] [--repeats 9] [--threads 2]

For every convolution shape of the benchmark models it times, interleaved in one process,
the input-gradient paths: the compiled im2col's (``compiled_im2col.ENABLED``: patches and
col2im compiled, which the library takes wherever Numba runs) and NumPy's two
(``DX_AS_CONV``: a convolution of the padded output gradient, or one product per kernel tap;
the library takes the first from ``DX_AS_CONV_MIN_CHANNELS`` input channels up), on
``--threads`` threads
(``backend.set_num_threads``), each call inside ``backend.single_threaded_blas()`` as a
training step does. Compare thread counts in separate processes: OpenBLAS's threads keep
spinning after a run that used them, and slow a threaded run that follows in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cnnumpy import backend
from cnnumpy.functional import _conv_input_grad, conv
from cnnumpy.functional.fast import compiled_im2col

# name: (input H, W, C), (kh, kw, C, F), whether its input gradient is needed
SHAPES = {
    "lenet conv1": ((28, 28, 1), (5, 5, 1, 32), False),
    "lenet conv2": ((14, 14, 32), (5, 5, 32, 64), True),
    "small conv2": ((13, 13, 8), (3, 3, 8, 16), True),
    "cifar conv2": ((32, 32, 32), (3, 3, 32, 32), True),
    "cifar conv3": ((16, 16, 32), (3, 3, 32, 64), True),
    "cifar conv4": ((16, 16, 64), (3, 3, 64, 64), True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=backend.get_num_threads())
    args = parser.parse_args()
    backend.set_num_threads(args.threads)
    variants = [(args.threads, "taps"), (args.threads, "conv"), (args.threads, "col2im")]
    default_min_channels = _conv_input_grad.DX_AS_CONV_MIN_CHANNELS
    _conv_input_grad.DX_AS_CONV_MIN_CHANNELS = 1  # compare the paths at every channel count
    rng = np.random.default_rng(0)
    for name, (shape, kshape, need_dx) in SHAPES.items():
        x = rng.standard_normal((args.batch, *shape), dtype=np.float32)
        kernel = rng.standard_normal(kshape, dtype=np.float32)
        bias = np.zeros(kshape[3], np.float32)
        times: dict = {v: ([], []) for v in variants}
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for threads, path in variants:
                compiled_im2col.ENABLED = path == "col2im"
                _conv_input_grad.DX_AS_CONV = path == "conv"
                with backend.single_threaded_blas():
                    t0 = time.perf_counter()
                    y, cache = conv.conv2d_forward(x, kernel, bias, 1, "same")
                    t1 = time.perf_counter()
                    conv.conv2d_backward(y, cache, need_dx=need_dx)
                    t2 = time.perf_counter()
                if round_:
                    times[threads, path][0].append(t1 - t0)
                    times[threads, path][1].append(t2 - t1)
        cells = [f"{t} thr {path} {1e3 * statistics.median(f):6.2f} / "
                 f"{1e3 * statistics.median(b):6.2f}" for (t, path), (f, b) in times.items()]
        print(f"{name:<12} fwd / bwd: " + " | ".join(cells), flush=True)
    backend.set_num_threads(None)
    compiled_im2col.ENABLED = True
    _conv_input_grad.DX_AS_CONV = True
    _conv_input_grad.DX_AS_CONV_MIN_CHANNELS = default_min_channels


if __name__ == "__main__":
    main()
