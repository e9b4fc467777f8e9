"""The ``cnnumpy`` command line: ``cnnumpy train`` trains a CNN on the bundled digits.

Exit status: 0 on success, 2 on a usage error, 1 on failure with a one-line message
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import cnnumpy
from cnnumpy import layers


def lenet(input_shape: tuple[int, ...], num_classes: int) -> cnnumpy.Sequential:
    """Conv 5x5x32 same, pool, conv 5x5x64 same, pool, dense 128, dense ``num_classes``."""
    return cnnumpy.Sequential([
        layers.Conv2D(32, 5, padding="same", activation="relu", input_shape=input_shape),
        layers.MaxPool2D(2),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="lenet")


def simple(input_shape: tuple[int, ...], num_classes: int) -> cnnumpy.Sequential:
    """The prototype notebook's model: two 3x3 convolutions with pooling, dense 128."""
    return cnnumpy.Sequential([
        layers.Conv2D(8, 3, activation="relu", input_shape=input_shape),
        layers.MaxPool2D(2),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="simple")


MODELS: dict[str, Callable] = {"lenet": lenet, "simple": simple}


class CLIError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


def load_data(spec: str):
    """``mnist-sample`` or a folder holding the IDX train pair (and optionally the t10k pair)."""
    if spec == "mnist-sample":
        return cnnumpy.datasets.load_mnist_sample()
    if not os.path.isdir(spec):
        raise CLIError(f"--data {spec!r}: expected 'mnist-sample' or a folder of IDX files")

    def pair(prefix):
        for ext in (".gz", ""):
            images = os.path.join(spec, f"{prefix}-images-idx3-ubyte{ext}")
            labels = os.path.join(spec, f"{prefix}-labels-idx1-ubyte{ext}")
            if os.path.isfile(images) and os.path.isfile(labels):
                return cnnumpy.datasets.load_idx(images, labels)
        return None

    train = pair("train")
    if train is None:
        raise CLIError(f"--data {spec!r}: no train-images-idx3-ubyte[.gz] and "
                       "train-labels-idx1-ubyte[.gz] in that folder")
    return train, pair("t10k")


def cmd_train(args: argparse.Namespace) -> None:
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        raise CLIError(f"--out {args.out!r}: folder {out_dir!r} does not exist or is not writable")
    cnnumpy.set_seed(args.seed)
    (x_train, y_train), test = load_data(args.data)
    num_classes = int(max(y_train.max(), test[1].max() if test else 0)) + 1
    model = MODELS[args.model](x_train.shape[1:], num_classes)
    optimizer = cnnumpy.optimizers.get(args.optimizer)
    if args.lr is not None:
        config = {**cnnumpy.optimizers.serialize(optimizer)["config"], "learning_rate": args.lr}
        optimizer = type(optimizer).from_config(config)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    print(f"Training on {len(x_train):,} images ({args.data}), {args.epochs} epochs")
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              validation_split=args.val_split, verbose=1)
    print(f"Trained in {time.perf_counter() - start:.1f}s")
    if test is not None:
        result = model.evaluate(*test, batch_size=256)
        print(f"Test loss: {result['loss']:.4f} - test accuracy: {result['accuracy']:.4f} "
              f"({len(test[0]):,} images)")
    model.save(args.out)
    print(f"Saved model to {args.out}")


def cmd_summary(args: argparse.Namespace) -> None:
    cnnumpy.load_model(args.model).summary()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnumpy", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a CNN and report its test accuracy")
    train.add_argument("--data", default="mnist-sample",
                       help="'mnist-sample' (bundled, default) or a folder of IDX files")
    train.add_argument("--model", default="lenet", choices=sorted(MODELS))
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd", "rmsprop"])
    train.add_argument("--lr", type=float, default=None, help="learning rate")
    train.add_argument("--val-split", type=float, default=0.0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="model.safetensors", help="where to save the model")
    train.set_defaults(func=cmd_train)
    summary = sub.add_parser("summary", help="print a saved model's layers")
    summary.add_argument("model")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ValueError, TypeError, OSError) as exc:
        if args.debug:
            raise
        print(f"cnnumpy {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
