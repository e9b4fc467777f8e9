"""The ``cnnumpy`` command line.

    cnnumpy train                      # LeNet on the bundled digits; prints test accuracy
    mpirun -n 4 cnnumpy train --distributed   # the same, data-parallel on 4 processes
    cnnumpy evaluate MODEL --data DIR  # loss, accuracy, per-class accuracy, confusion matrix
    cnnumpy predict MODEL IMAGE...     # top classes of each image
    cnnumpy summary MODEL
    cnnumpy visualize MODEL IMAGE --out MAPS.png
    cnnumpy export MODEL --onnx OUT.onnx  # for onnxruntime and other ONNX runtimes
    cnnumpy serve [MODEL] [--port 0] [--open]  # a local page: draw a digit, see the maps

Exit status: 0 on success, 2 on a usage error, 1 on failure with a one-line message
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

import cnnumpy
from cnnumpy import cli_args, cli_data, distributed, io, models
from cnnumpy.callbacks import Callback
from cnnumpy.cli_data import CLIError, check_data_fits, class_names, load_data, load_image
from cnnumpy.inputs import validation_count
from cnnumpy.optimizers.schedules import CosineDecay


class _EpochCheckpoint(Callback):
    """Write ``epoch-NNN.safetensors`` (weights and optimizer state) after every epoch."""

    root_only = True  # in a distributed run, rank 0 alone writes

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.model.save(os.path.join(self.folder, f"epoch-{epoch + 1:03d}.safetensors"))


def _check_writable(path: str, flag: str, model: cnnumpy.Sequential | None = None,
                    shown: str | None = None) -> None:
    """Fail now if ``path`` cannot be written (a missing, read-only or full folder); with a
    model, a file of its size must fit (see :func:`cnnumpy.io.check_writable`)."""
    io.check_writable(path, model, f"{flag} {shown or path!r}")


def make_optimizer(args: argparse.Namespace, n_train: int) -> cnnumpy.optimizers.Optimizer:
    """The optimizer for ``--optimizer``, ``--lr`` and ``--schedule``.

    With the default cosine schedule the learning rate starts at ``--lr`` (default 2e-3 for
    the Adam family, else the optimizer's own default) and decays to 0 over the whole run.
    """
    optimizer = cnnumpy.optimizers.get(args.optimizer)
    config = cnnumpy.optimizers.serialize(optimizer)["config"]
    lr = args.lr
    if lr is None:
        lr = 2e-3 if args.optimizer in ("adam", "adamw") and args.schedule == "cosine" \
            else config["learning_rate"]
    if args.schedule == "cosine":
        lr = CosineDecay(lr, decay_steps=max(1, args.epochs * _steps_per_epoch(args, n_train)))
    return type(optimizer).from_config({**config, "learning_rate": lr})


def _steps_per_epoch(args: argparse.Namespace, n_train: int) -> int:
    """Optimizer steps in one epoch: global batches of ``--batch-size`` images per process."""
    batch = args.batch_size * (distributed.size() if args.distributed else 1)
    return -(-(n_train - validation_count(n_train, args.val_split)) // batch)


def replan_schedule(model: cnnumpy.Sequential, args: argparse.Namespace, n_train: int) -> None:
    """Fit a resumed run's cosine schedule to ``--epochs``, keeping the steps already taken.

    The schedule is re-planned to reach 0 at the end of epoch ``--epochs``: resuming an
    interrupted run with its own settings changes nothing, and extending a finished run
    picks the learning rate up again from where the longer cosine would be.
    """
    optimizer = model.optimizer
    schedule = optimizer.learning_rate
    if not isinstance(schedule, CosineDecay):
        return
    remaining = (args.epochs - model.epoch) * _steps_per_epoch(args, n_train)
    decay_steps = max(1, optimizer.iterations + remaining - schedule.warmup_steps)
    if decay_steps == schedule.decay_steps:
        return
    optimizer.learning_rate = CosineDecay(**{**schedule.get_config(),
                                             "decay_steps": decay_steps})
    print(f"Cosine schedule re-planned to end at epoch {args.epochs}: learning rate "
          f"{optimizer.current_learning_rate:.3g} now, 0 after {remaining:,} more steps")


def cmd_train(args: argparse.Namespace) -> None:
    root = not args.distributed or distributed.is_root()
    with contextlib.ExitStack() as stack:
        if not root:  # in a distributed run, rank 0 alone prints and writes files
            stack.enter_context(contextlib.redirect_stdout(
                stack.enter_context(open(os.devnull, "w"))))
        _train(args, root)


def _train(args: argparse.Namespace, root: bool) -> None:
    _check_writable(args.out, "--out")
    if args.plot:
        _check_writable(args.plot, "--plot")
    checkpoint = os.path.join(args.checkpoint_dir or "", "epoch-001.safetensors")
    if args.checkpoint_dir:
        try:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"--checkpoint-dir {args.checkpoint_dir!r}: cannot create the "
                           f"folder ({exc.strerror or exc})") from None
        _check_writable(checkpoint, "--checkpoint-dir", shown=args.checkpoint_dir)
    for key, value in models.training_defaults(args.model).items():
        if getattr(args, key) is None:  # not given: the model's own recipe
            setattr(args, key, value)
    cnnumpy.set_seed(args.seed)
    resumed = cnnumpy.load_model(args.resume) if args.resume else None  # its image settings
    data = load_data(args.data, resumed.input_shape if resumed else None, args.color_mode,
                     args.image_size)
    if data.train is None:
        raise CLIError(f"--data {args.data!r}: only t10k-* (test) IDX files; training needs "
                       "train-images-idx3-ubyte and train-labels-idx1-ubyte")
    x_train, y_train = data.train
    if args.class_names:
        data = data._replace(class_names=cli_data.parse_class_names(
            args.class_names, len(data.class_names)))
    if data.held_out:
        print(f"No t10k files: holding out the last {len(data.test[0]):,} images as the test "
              "set, never used for training or validation")
    if data.test_split:
        print(f"Holding out {len(data.test[0]):,} images as the test set (a sixth of each "
              "class, rounded down, chosen by a hash of their paths: the same on every run), "
              "never used for training or validation")
    if args.resume:
        model = resumed
        if model.optimizer is None:
            raise CLIError(f"--resume {args.resume!r}: the file holds no optimizer state, so "
                           "training cannot resume from it")
        check_data_fits(model, x_train, y_train, args.data, args.resume)
        if args.epochs <= model.epoch:
            raise CLIError(f"--resume {args.resume!r}: the checkpoint has trained "
                           f"{model.epoch} epochs already; --epochs is the run's total, so "
                           f"pass --epochs N with N > {model.epoch} to train on")
        print(f"Resuming from {args.resume} after epoch {model.epoch}")
        replan_schedule(model, args, len(x_train))
    else:
        num_classes = max(len(data.class_names), int(y_train.max()) + 1)
        model = models.get(args.model, x_train.shape[1:], num_classes)
        augment = args.augment
        if augment is True:  # --augment alone, or the recipe's: shifts, flips for clothing
            augment = cli_data.default_augmentations(args.data)
        if augment:
            model = models.with_augmentation(model, flip="flip" in augment,
                                             shift="shift" in augment)
        model.compile(make_optimizer(args, len(x_train)), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    model.class_names = data.class_names
    model.preprocessing = cli_data.preprocessing(x_train)
    model.build()
    _check_writable(args.out, "--out", model)  # a file of the model's size must fit now
    if args.checkpoint_dir:
        _check_writable(checkpoint, "--checkpoint-dir", model, args.checkpoint_dir)
    model.summary()
    n_val = validation_count(len(x_train), args.val_split)
    print(f"Training on {len(x_train) - n_val:,} images ({args.data}) for {args.epochs} epochs"
          + (f", validating on the last {n_val:,} of them" if n_val else ""))
    callbacks = [_EpochCheckpoint(args.checkpoint_dir)] if args.checkpoint_dir else []
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.val_split, verbose=1 if sys.stdout.isatty() else 2,
                        callbacks=callbacks, initial_epoch=model.epoch,
                        distributed=args.distributed)
    seconds = time.perf_counter() - start
    seen = (len(x_train) - n_val) * len(history.epoch)
    print(f"Trained in {seconds:.1f}s ({seen / max(seconds, 1e-9):,.0f} training images/s)")
    if not root:
        return
    if data.test is not None and len(data.test[0]):
        x_test = cli_data.match_polarity(model, data.test[0], data)  # as evaluate sees them
        result = model.evaluate(x_test, data.test[1], batch_size=256)
        print(f"Test loss: {result['loss']:.4f} - test accuracy: {result['accuracy']:.4f} "
              f"({len(data.test[0]):,} images)")
    model.save(args.out)
    print(f"Saved model to {args.out}")
    if args.plot:
        from cnnumpy.plot import plot_history

        plot_history(history.history, args.plot)
        print(f"Saved training curves to {args.plot}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.plot:
        _check_writable(args.plot, "--plot")
    model = cnnumpy.load_model(args.model)
    data = load_data(args.data, model.input_shape)
    x, y = cli_data.evaluation_set(data, args.data, args.all_images)
    x = cli_data.match_polarity(model, x, data, args.invert)  # as predict converts each image
    check_data_fits(model, x, y, args.data, args.model)
    names = class_names(model, data.class_names, args.model)
    probs = model.predict(x, batch_size=256)
    predicted = probs.argmax(axis=1)
    loss = cnnumpy.losses.SparseCategoricalCrossentropy()(y, probs)
    print(f"{len(x):,} images - loss: {loss:.4f} - accuracy: {np.mean(predicted == y):.4f}")
    from cnnumpy.plot import confusion_matrix

    cm = confusion_matrix(y, predicted, probs.shape[1])
    width = max(len(n) for n in names) + 2
    print("Per-class accuracy:")
    for c, name in enumerate(names):
        total = cm[c].sum()
        acc = f"{cm[c, c] / total:.4f}" if total else "n/a"
        print(f"  {name:<{width}} {acc}  ({total} images)")
    print("Confusion matrix (rows: true class, columns: predicted):")
    for c, name in enumerate(names):
        print(f"  {name:<{width}}" + " ".join(f"{v:5d}" for v in cm[c]))
    if args.plot:
        from cnnumpy.plot import plot_confusion_matrix

        plot_confusion_matrix(cm, names, args.plot)
        print(f"Saved confusion matrix to {args.plot}")


def cmd_predict(args: argparse.Namespace) -> None:
    model = cnnumpy.load_model(args.model)
    settings = cnnumpy.datasets.image_settings(model)
    x = np.stack([load_image(p, settings, args.invert) for p in args.images])
    probs = model.predict(x)
    names = class_names(model, [], args.model)
    k = min(args.top_k, probs.shape[1])
    results = []
    for path, p in zip(args.images, probs, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        results.append({"image": path, "top": [{"class": names[c], "index": int(c),
                                                "probability": float(p[c])} for c in top]})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(r["image"] + ": " + ", ".join(f"{t['class']} ({t['probability']:.3f})"
                                            for t in r["top"]))


def cmd_summary(args: argparse.Namespace) -> None:
    model = cnnumpy.load_model(args.model)
    model.summary()
    if model.class_names:
        print(f"Classes: {', '.join(model.class_names)}")


def cmd_visualize(args: argparse.Namespace) -> None:
    from cnnumpy.plot import plot_feature_maps

    _check_writable(args.out, "--out")
    model = cnnumpy.load_model(args.model)
    image = load_image(args.image, cnnumpy.datasets.image_settings(model), args.invert)
    plot_feature_maps(model, image, args.out)
    print(f"Saved filters and feature maps to {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    _check_writable(args.onnx, "--onnx")
    from cnnumpy import onnx as onnx_export  # the optional extra: pip install "cnnumpy[onnx]"

    model = cnnumpy.load_model(args.model, compile=False)
    onnx_export.export(model, args.onnx, opset=args.opset)
    shape = ", ".join(str(d) for d in model.input_shape)
    print(f"Saved {args.onnx} (ONNX opset {args.opset or onnx_export.DEFAULT_OPSET}): input "
          f"'input' float32 (batch, {shape}), output 'output' as from predict")


def cmd_serve(args: argparse.Namespace) -> None:
    from cnnumpy.serve import run

    run(args.model, args.host, args.port, args.open, int(args.max_body_mb * 2**20), args.verbose)


def build_parser() -> argparse.ArgumentParser:
    """The ``cnnumpy`` parser, each subcommand calling its ``cmd_*`` function."""
    return cli_args.build_parser({"train": cmd_train, "evaluate": cmd_evaluate,
                                  "predict": cmd_predict, "summary": cmd_summary,
                                  "visualize": cmd_visualize, "export": cmd_export,
                                  "serve": cmd_serve})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ValueError, TypeError, OSError, ImportError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"cnnumpy {args.command}: error: {message}", file=sys.stderr)
        if getattr(args, "distributed", False) and distributed.joined():
            distributed.abort("stopping every rank")  # the others must not wait for this one
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
