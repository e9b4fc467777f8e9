"""One rank of a distributed training run, launched by tests/test_distributed.py via mpirun.

Every rank writes ``OUT/rank-{r}.npz`` (its weights, for the test to compare) and
``OUT/rank-{r}.json`` (its history and the files it wrote through ``cnnumpy.io``); those
two files are test scaffolding, not output of the library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

import numpy as np

import cnnumpy
from cnnumpy import callbacks, distributed, io, layers


def make_data(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.random.default_rng(123)
    x = data.normal(size=(n, 6, 6, 1)).astype(dtype)
    y = data.integers(0, 3, size=n)
    return x, y


def make_model(kind: str, dtype: str) -> cnnumpy.Sequential | cnnumpy.Model:
    if kind == "graph":  # a residual block: a functional Model trains through the same fit
        inputs = cnnumpy.Input((6, 6, 1), dtype=dtype)
        h = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
        r = layers.Conv2D(3, 3, padding="same")(h)
        h = layers.ReLU()(layers.Add()([h, r]))
        model = cnnumpy.Model(inputs, layers.Dense(3, activation="softmax")(layers.Flatten()(h)))
    else:
        stack = [layers.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 1))]
        if kind == "dropout_bn":
            stack += [layers.BatchNormalization(momentum=0.8), layers.Dropout(0.3)]
        stack += [layers.Flatten(), layers.Dense(3, activation="softmax")]
        model = cnnumpy.Sequential(stack, dtype=dtype)
    model.compile(cnnumpy.optimizers.Adam(learning_rate=0.01),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def flat_weights(model: cnnumpy.Sequential, prefix: str) -> dict[str, np.ndarray]:
    out = {f"{prefix}{i}.{k}": v for i, layer in enumerate(model.layers)
           for k, v in layer.get_weights().items()}
    for i, slots in model.optimizer.state_dict()["state"].items():
        out.update({f"{prefix}opt{i}.{k}": v for k, v in slots.items()})
    return out


class Fault(callbacks.Callback):
    """On one rank, at one batch of one epoch: raise, die by SIGKILL, or hang."""

    def __init__(self, mode: str, rank: int, epoch: int = 1, batch: int = 1) -> None:
        super().__init__()
        self.mode, self.rank, self.epoch, self.batch = mode, rank, epoch, batch
        self.current = -1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current = epoch

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if distributed.rank() != self.rank or (self.current, batch) != (self.epoch, self.batch):
            return
        if self.mode == "raise":
            raise RuntimeError(f"injected failure on rank {self.rank}")
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "hang":
            time.sleep(600)


class StopOnOneRank(callbacks.Callback):
    """Ask to stop after ``epoch`` on the last rank only: every rank must stop together."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch and distributed.rank() == distributed.size() - 1:
            self.model.stop_training = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", default="plain", choices=["plain", "dropout_bn", "graph"])
    parser.add_argument("--dtypes", default="float64")
    parser.add_argument("--n", type=int, default=26)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--val-split", type=float, default=0.0)
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--checkpoints", action="store_true")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--fault", default=None, choices=["raise", "kill", "hang"])
    args = parser.parse_args()

    writes: list[str] = []
    atomic_write = io.atomic_write

    def recording_write(path: str, data: bytes) -> None:
        writes.append(os.path.basename(path))
        atomic_write(path, data)

    io.atomic_write = recording_write
    r = distributed.rank()
    weights, histories = {}, {}
    for dtype in args.dtypes.split(","):
        cnnumpy.set_seed(7 + r)  # different seeds: rank 0's state must reach every rank
        x, y = make_data(args.n, dtype)
        if args.resume:
            model = cnnumpy.load_model(args.resume)
            cnnumpy.backend.set_rng_state(model.rng_state)
        else:
            model = make_model(args.kind, dtype)
        cbs: list[callbacks.Callback] = []
        if args.checkpoints:
            cbs += [callbacks.ModelCheckpoint(os.path.join(args.out, "ckpt-{epoch}.safetensors")),
                    callbacks.CSVLogger(os.path.join(args.out, "log.csv"))]
        if args.stop_after is not None:
            cbs.append(StopOnOneRank(args.stop_after))
        if args.fault:
            cbs.append(Fault(args.fault, rank=distributed.size() - 1))
        history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch,
                            validation_split=args.val_split, verbose=2, callbacks=cbs,
                            initial_epoch=model.epoch, distributed=True)
        weights.update(flat_weights(model, f"{dtype}/"))
        histories[dtype] = history.history
    np.savez(os.path.join(args.out, f"rank-{r}.npz"), **weights)
    with open(os.path.join(args.out, f"rank-{r}.json"), "w") as f:
        json.dump({"history": histories, "writes": writes}, f)


if __name__ == "__main__":
    main()
