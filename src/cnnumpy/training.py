"""The loops behind every model's ``fit`` and ``evaluate`` (:class:`cnnumpy.model_base.BaseModel`,
which ``Sequential`` and ``Model`` share); the input checks they share with ``predict`` are in
:mod:`cnnumpy.inputs`."""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy import distributed as dist
from cnnumpy.backend import xp
from cnnumpy.callbacks.base import Callback, History
from cnnumpy.inputs import check_arrays, check_int, sample_weights, split_validation


def iterate_batches(n: int, batch_size: int, where: str,
                    order: Any = None) -> Iterator[Any]:
    """Yield the indices of each batch: slices in order, or chunks of ``order``."""
    batch_size = check_int(batch_size, "batch_size", where, 1)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield slice(start, stop) if order is None else order[start:stop]


def _live_display() -> bool:
    """True when stdout can show a live bar: a terminal with a width, or a notebook.

    A file, a pipe, and the zero-width terminal Open MPI gives its ranks cannot.
    """
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stdout.isatty() and os.get_terminal_size(sys.stdout.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


class _Progress:
    """Per-epoch progress: a tqdm bar (verbose=1) or one line per epoch (verbose=2).

    The bar shows images done, images per second, the ETA, and the running loss and metrics.
    Where stdout cannot show a bar (see :func:`_live_display`), verbose=1 prints the lines.
    """

    def __init__(self, verbose: int, epoch: int, epochs: int, n: int) -> None:
        if verbose == 1 and not _live_display():
            verbose = 2
        self.verbose, self.n = verbose, n
        self.start = time.perf_counter()
        self.prefix = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if verbose == 1:
            from tqdm import tqdm

            self.bar = tqdm(total=n, desc=self.prefix, unit="img", unit_scale=True,
                            file=sys.stdout, dynamic_ncols=True, mininterval=0.2)

    def update(self, done: int, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.update(done - self.bar.n)

    def end(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.close()
        elif self.verbose == 2:
            elapsed = time.perf_counter() - self.start
            metrics = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
            print(f"{self.prefix} - {elapsed:.1f}s - {self.n / max(elapsed, 1e-9):,.0f} img/s"
                  f" - {metrics}", flush=True)


def run_fit(model: Any, x: Any, y: Any, *, distributed: bool = False,
            **options: Any) -> History:
    """Train ``model`` (see ``BaseModel.fit``, whose other arguments are ``options``)."""
    if distributed and dist.size() > 1:
        with dist.abort_on_error():  # one failing rank stops all ranks, never a hang
            return _fit(model, x, y, parallel=True, **options)
    return _fit(model, x, y, parallel=False, **options)


def _fit(model: Any, x: Any, y: Any, *, epochs: int, batch_size: int,
         validation_split: float, validation_data: Any, shuffle: bool, verbose: int,
         callbacks: list[Callback] | None, initial_epoch: int, class_weight: dict | None = None,
         sample_weight: Any = None, parallel: bool = False) -> History:
    where = f"{type(model).__name__}.fit"
    epochs = check_int(epochs, "epochs", where, 0)
    initial_epoch = check_int(initial_epoch, "initial_epoch", where, 0)
    check_int(batch_size, "batch_size", where, 1)
    if verbose not in (0, 1, 2) or isinstance(verbose, float):
        raise ValueError(f"{where}: verbose must be 0, 1 or 2, received verbose={verbose!r}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"{where}: shuffle must be True or False, received "
                        f"shuffle={shuffle!r}")
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"{where}: callbacks must be a list of Callback instances, "
                        f"received {callbacks!r}")
    x, y = check_arrays(model, x, y, "fit")
    weights = sample_weights(y, class_weight, sample_weight, where)
    # As in Keras, the validation tail keeps its share of sample_weight (not of class_weight).
    x, y, val = split_validation(model, x, y, validation_split, validation_data,
                                 None if sample_weight is None else weights)
    if weights is not None:
        weights = weights[:len(x)]  # the validation share is the tail
    resume_state, model.rng_state = model.rng_state, None  # used once, by this fit at most
    if resume_state is not None and initial_epoch == model.epoch:
        # A loaded checkpoint continuing where it stopped: the generator as it was then, so
        # shuffles, dropout masks and augmentations are those of a run that never stopped.
        backend.set_rng_state(resume_state)
    _warn_if_schedule_ended(model, epochs > initial_epoch)
    history = History()
    callbacks = [*(callbacks or []), history]
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                f"{where}: callbacks must be Callback instances, received {cb!r}")
        cb.set_model(model)
    if parallel:
        dist.synchronize_model(model)  # rank 0's weights, optimizer and generator everywhere
        if not dist.is_root():  # rank 0 alone prints and writes files
            verbose = 0
            callbacks = [cb for cb in callbacks if not _root_only(cb)]
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin()
    n = len(x)
    step = batch_size * dist.size() if parallel else batch_size  # samples per global batch
    for epoch in range(initial_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        order = backend.rng().permutation(n) if shuffle else None
        shared_rng = _enter_rank_stream() if parallel else None
        progress = _Progress(verbose, epoch, epochs, n)
        totals: dict[str, float] = {}
        seen = 0
        for batch, idx in enumerate(iterate_batches(n, step, where, order)):
            for cb in callbacks:
                cb.on_batch_begin(batch)
            size, batch_logs = _parallel_step(model, x, y, weights, idx) if parallel \
                else _local_step(model, x, y, weights, idx)
            seen += size
            for key, v in batch_logs.items():
                totals[key] = totals.get(key, 0.0) + v * size
            logs = {k: v / seen for k, v in totals.items()}
            progress.update(seen, logs)
            for cb in callbacks:
                cb.on_batch_end(batch, batch_logs)
            if model.stop_training:
                break  # e.g. TerminateOnNaN, which must see a non-finite loss before we raise
            value = batch_logs["loss"]
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"{where}: the loss became {value} at epoch {epoch + 1}, batch "
                    f"{batch + 1}; try a lower learning rate or check the data for NaN/Inf")
        logs = {k: v / max(seen, 1) for k, v in totals.items()}
        if shared_rng is not None:  # parallel
            backend.set_rng_state(shared_rng)  # back on the stream all ranks share
            dist.average_state(model)  # e.g. BatchNormalization's moving statistics
        if val is not None:
            val_logs = _parallel_evaluate(model, *val, batch_size) if parallel \
                else model.evaluate(val[0], val[1], batch_size=batch_size, sample_weight=val[2])
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        progress.end(logs)
        model.epoch = epoch + 1
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if parallel:  # all ranks stop together, even if a callback decided on one rank only
            model.stop_training = dist.any_true(model.stop_training)
        if model.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end()
    return history


def _warn_if_schedule_ended(model: Any, will_train: bool) -> None:
    """Warn when a learning-rate schedule has already decayed to 0: such a fit (e.g. one
    that extends a finished run) would silently leave the weights as they are."""
    optimizer = model.optimizer
    if will_train and callable(optimizer.learning_rate) \
            and optimizer.current_learning_rate == 0:
        warnings.warn(f"{type(model).__name__}.fit: the learning-rate schedule "
                      f"{optimizer.learning_rate!r} is at 0 from step {optimizer.iterations}, "
                      "so this fit will not change the weights; to train on, give the "
                      "optimizer a new schedule (e.g. one planned over the longer run) or a "
                      "float learning_rate", stacklevel=5)


def run_evaluate(model: Any, x: Any, y: Any, batch_size: int, verbose: int,
                 sample_weight: Any) -> dict:
    """Loss and metrics over ``(x, y)`` in inference mode (see ``BaseModel.evaluate``)."""
    where = f"{type(model).__name__}.evaluate"
    x, y = check_arrays(model, x, y, "evaluate")
    weights = sample_weights(y, None, sample_weight, where)
    totals: dict[str, float] = {}
    for idx in iterate_batches(len(x), batch_size, where):
        with backend.single_threaded_blas():
            y_pred, value, _ = model._forward_loss(
                x[idx], y[idx], False, None if weights is None else weights[idx])
        logs = {"loss": value}
        logs.update({k: f(y[idx], y_pred) for k, f in model._metric_fns(y_pred.shape).items()})
        for key, v in logs.items():
            totals[key] = totals.get(key, 0.0) + v * len(y_pred)
    result = {k: v / len(x) for k, v in totals.items()}
    if verbose:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
    return result


def _local_step(model: Any, x: Any, y: Any, weights: Any, idx: Any) -> tuple[int, dict]:
    """One optimizer step on ``x[idx]``: the batch size and the batch's loss and metrics."""
    y_pred, value = model.train_step(x[idx], y[idx], None if weights is None else weights[idx])
    logs = {"loss": value}
    logs.update({k: f(y[idx], y_pred) for k, f in model._metric_fns(y_pred.shape).items()})
    return len(y_pred), logs


def _parallel_step(model: Any, x: Any, y: Any, weights: Any, idx: Any) -> tuple[int, dict]:
    """One data-parallel step on the global batch ``idx``; this rank computes its shard.

    Each rank's gradient is the mean over its ``n_r`` samples; scaled by ``n_r / N`` (``N``
    the global batch size) and summed over ranks by one allreduce, it becomes the mean over
    the whole global batch, as one process with batch ``N`` computes it, whatever the
    shares (an empty share adds zeros). The loss and metrics ride in the same buffer.
    """
    total = (idx.stop - idx.start) if isinstance(idx, slice) else len(idx)
    part = dist.shard(idx)
    params = [p for layer in model.layers for p in layer.params.values()]
    xb, yb = x[part], y[part]
    keys = ["loss", *model.metrics]
    if len(xb):
        with backend.single_threaded_blas():  # as in train_step: the kernels' threads
            y_pred, value, grad = model._forward_loss(
                xb, yb, True, None if weights is None else weights[part])
            model._backward(grad)
        grads = model.trainable_weights()[1]
        fns = model._metric_fns(y_pred.shape)
        values = [value, *(fns[k](yb, y_pred) for k in model.metrics)]
    else:
        grads, values = [xp.zeros_like(p) for p in params], [0.0] * len(keys)
    buffer = dist.pack(grads, values, dist.common_dtype(params))
    buffer *= len(xb) / total
    grads, values = dist.unpack(dist.allreduce_sum_(buffer), params)
    model.optimizer.apply(params, grads)
    return total, dict(zip(keys, values, strict=True))


def _parallel_evaluate(model: Any, x: Any, y: Any, weights: Any, batch_size: int) -> dict:
    """``model.evaluate`` on this rank's shard of ``(x, y)``, averaged over all samples."""
    part = dist.shard(slice(0, len(x)))
    keys = ["loss", *model.metrics]
    count = part.stop - part.start
    sums = [0.0] * len(keys)
    if count:
        logs = model.evaluate(x[part], y[part], batch_size=batch_size,
                              sample_weight=None if weights is None else weights[part])
        sums = [logs[k] * count for k in keys]
    buffer = dist.allreduce_sum_(np.array([*sums, count], dtype=np.float64))
    return {k: float(v / buffer[-1]) for k, v in zip(keys, buffer[:-1], strict=True)}


def _root_only(cb: Callback) -> bool:
    """Callbacks that write files and decide nothing: only rank 0 runs them."""
    from cnnumpy.callbacks import CSVLogger, ModelCheckpoint

    return isinstance(cb, (ModelCheckpoint, CSVLogger)) or bool(getattr(cb, "root_only", False))


def _enter_rank_stream() -> dict[str, Any]:
    """Switch the library generator to a stream of this rank's own for the epoch's batches
    (dropout masks and augmentations differ between ranks) and return the shared state,
    which every rank restores at the epoch's end, so the next shuffle is the same everywhere.
    """
    shared = backend.rng_state()
    s = int(shared["state"]["state"])
    seed = np.random.SeedSequence([s & (2**64 - 1), s >> 64, dist.rank()])
    backend.set_rng_state(np.random.PCG64(seed).state)
    return shared
