"""``cnnumpy train``: the optimizer and its schedule, checkpoints, resuming, and the run."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any

import numpy as np

import cnnumpy
from cnnumpy import cli_data, distributed, io, models
from cnnumpy.callbacks import Callback
from cnnumpy.cli_data import CLIError, check_data_fits, load_data
from cnnumpy.inputs import validation_count
from cnnumpy.losses import SparseCategoricalCrossentropy
from cnnumpy.optimizers.schedules import CosineDecay


class _EpochCheckpoint(Callback):
    """Write ``epoch-NNN.safetensors`` (weights and optimizer state) after every epoch."""

    root_only = True  # in a distributed run, rank 0 alone writes

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.model.save(os.path.join(self.folder, f"epoch-{epoch + 1:03d}.safetensors"))


def check_writable(path: str, flag: str, model: cnnumpy.Sequential | None = None,
                    shown: str | None = None) -> None:
    """Fail now if ``path`` cannot be written (a missing, read-only or full folder); with a
    model, a file of its size must fit (see :func:`cnnumpy.io.check_writable`)."""
    io.check_writable(path, model, f"{flag} {shown or path!r}")


RECIPE_ARGS = ("epochs", "batch_size", "val_split", "augment", "label_smoothing")
"""The recipe's keys that set a flag left out (its ``optimizer``, ``optimizer_args`` and
``lr`` are :func:`make_optimizer`'s; its ``tta`` applies with flips only)."""


def _family(name: str) -> str:
    """Adam and AdamW share a recipe's learning rate."""
    return "adam" if name in ("adam", "adamw") else name


def augmented(model: Any, args: argparse.Namespace) -> Any:
    """``model`` behind ``--augment``'s layers (``True``: the data's defaults), its shifts of up
    to the model's recipe's ``shift`` share of the image (10% unless it says)."""
    augment = args.augment
    if augment is True:  # --augment alone, or the recipe's: shifts, flips for clothing
        augment = cli_data.default_augmentations(args.data)
    if not augment:
        return model
    shift = models.training_defaults(args.model).get("shift", True)
    return models.with_augmentation(model, flip="flip" in augment,
                                    shift=shift if "shift" in augment else False,
                                    erase="erase" in augment)


def make_optimizer(args: argparse.Namespace, n_train: int) -> cnnumpy.optimizers.Optimizer:
    """The optimizer for ``--optimizer``, ``--lr`` and ``--schedule``.

    ``--optimizer`` defaults to the model's recipe's (Adam unless it says). With the default
    cosine schedule the learning rate starts at ``--lr`` (default: the recipe's ``lr`` for
    the recipe's optimizer, Adam and AdamW counting as one; else
    :data:`cnnumpy.models.ADAM_LR` for the Adam family and other optimizers' own default) and
    decays to 0 over the whole run. The recipe's ``optimizer_args`` (momentum, weight decay)
    apply to its own optimizer only.
    """
    recipe = models.training_defaults(args.model)
    recipe_name = recipe.get("optimizer", "adam")
    name = args.optimizer or recipe_name
    optimizer = cnnumpy.optimizers.get(name)
    config = cnnumpy.optimizers.serialize(optimizer)["config"]
    if name == recipe_name:
        config.update(recipe.get("optimizer_args", {}))
    lr = args.lr
    if lr is None:
        lr = config["learning_rate"]
        if args.schedule == "cosine" and _family(name) == _family(recipe_name) \
                and "lr" in recipe:
            lr = recipe["lr"]
        elif args.schedule == "cosine" and _family(name) == "adam":
            lr = models.ADAM_LR
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
    cnnumpy.backend.keep_freed_memory()  # steps reuse freed memory: no page faults
    root = not args.distributed or distributed.is_root()
    with contextlib.ExitStack() as stack:
        if not root:  # in a distributed run, rank 0 alone prints and writes files
            stack.enter_context(contextlib.redirect_stdout(
                stack.enter_context(open(os.devnull, "w"))))
        _train(args, root)


def _test_time_flips(args: argparse.Namespace, model: cnnumpy.Sequential) -> bool:
    """Whether to score the test set with mirrored images averaged too: ``--tta``, else the
    recipe's ``tta`` where the model was trained with flips; ``--tta`` without flips fails."""
    flips = models.flips_horizontally(model)
    if args.tta and not flips:
        raise CLIError("--tta averages each test image's predictions with its mirror "
                       "image's: the model must be trained with flips (--augment shift,flip)")
    if args.tta is None:
        return flips and bool(models.training_defaults(args.model).get("tta"))
    return bool(args.tta)


def _train(args: argparse.Namespace, root: bool) -> None:
    check_writable(args.out, "--out")
    if args.plot:
        check_writable(args.plot, "--plot")
    checkpoint = os.path.join(args.checkpoint_dir or "", "epoch-001.safetensors")
    if args.checkpoint_dir:
        try:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"--checkpoint-dir {args.checkpoint_dir!r}: cannot create the "
                           f"folder ({exc.strerror or exc})") from None
        check_writable(checkpoint, "--checkpoint-dir", shown=args.checkpoint_dir)
    fixed = [flag for flag, value in (("--optimizer", args.optimizer), ("--lr", args.lr),
                                      ("--label-smoothing", args.label_smoothing),
                                      ("--augment", args.augment)) if value is not None]
    if args.resume and fixed:  # seen before the recipe fills these in; the same command
        # line run again with --resume added must still work, so a note, not an error
        print(f"Note: --resume {args.resume!r}: the checkpoint's optimizer, loss and "
              f"augmentation go on as they were; {', '.join(fixed)} not applied (start a new "
              "run to train otherwise)", file=sys.stderr)
    for key, value in models.training_defaults(args.model).items():
        if key in RECIPE_ARGS and getattr(args, key) is None:  # not given: the recipe's
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
        model = augmented(model, args)
        model.compile(make_optimizer(args, len(x_train)),
                      SparseCategoricalCrossentropy(label_smoothing=args.label_smoothing or 0.0),
                      metrics=["accuracy"])
    model.class_names = data.class_names
    model.preprocessing = cli_data.preprocessing(x_train)
    model.build()
    tta = _test_time_flips(args, model)  # a --tta without flips fails before training
    check_writable(args.out, "--out", model)  # a file of the model's size must fit now
    if args.checkpoint_dir:
        check_writable(checkpoint, "--checkpoint-dir", model, args.checkpoint_dir)
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
        if tta:
            probs = models.predict_mirrored(model, x_test, batch_size=256)
            print(f"Test accuracy with mirrored images averaged (--tta): "
                  f"{np.mean(probs.argmax(axis=1) == data.test[1]):.4f}")
    model.save(args.out)
    print(f"Saved model to {args.out}")
    if args.plot:
        from cnnumpy.plot import plot_history

        plot_history(history.history, args.plot)
        print(f"Saved training curves to {args.plot}")
