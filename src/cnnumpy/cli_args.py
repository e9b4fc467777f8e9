"""The command line's arguments: the parser of every subcommand, whose usage errors are one
line, and the types that refuse impossible values (``--epochs 0``, ``--lr nan``) before any
work starts."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from cnnumpy import cli_data, models


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reports a usage error as one line on stderr (exit status 2),
    pointing to ``--help`` instead of printing the whole usage."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, "
                                             f"received {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, "
                                             f"received {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _number(text: str, ok: Callable[[float], bool], expected: str) -> float:
    """``text`` as a float that passes ``ok`` (NaN and non-numbers never do), or an argparse
    error saying what was ``expected``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number ``> 0`` (a learning rate)."""
    return _number(text, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def fraction(text: str) -> float:
    """An argparse type: a number in ``[0, 1)`` (the validation share)."""
    return _number(text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def augmentations(text: str) -> tuple[str, ...]:
    """An argparse type: ``--augment``'s comma-separated names, each of
    :data:`cnnumpy.cli_data.AUGMENTATIONS`."""
    names = tuple(n.strip() for n in text.split(","))
    unknown = [n for n in names if n not in cli_data.AUGMENTATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"expected names among {', '.join(cli_data.AUGMENTATIONS)} separated by commas, "
            f"received {text!r}")
    return names


INVERT_HELP = ("invert an image whose background is on the other side of 0.5 from the "
               "training images' (ink on paper for a model of light-on-dark digits); images "
               "are padded to the model's aspect ratio, then resized (default: --invert)")


def recipe_text(recipe: dict[str, Any]) -> str:
    """A recipe of :data:`cnnumpy.models.TRAINING_DEFAULTS` in words, for the help."""
    words = [f"{recipe['epochs']} epochs", f"batch size {recipe['batch_size']}",
             f"val-split {recipe['val_split']}", f"augment {'on' if recipe['augment'] else 'off'}"]
    if recipe["augment"] and "shift" in recipe:
        words.append(f"shifts up to {recipe['shift']:.0%}")
    if "optimizer" in recipe or "lr" in recipe:
        name = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}[
            recipe.get("optimizer", "adam")]
        args = recipe.get("optimizer_args", {})
        extra = ([f"{'Nesterov ' if args.get('nesterov') else ''}momentum {args['momentum']:g}"]
                 if args.get("momentum") else [])
        extra += [f"weight decay {args['weight_decay']:g}"] if args.get("weight_decay") else []
        words.append(f"{name}{' (' + ', '.join(extra) + ')' if extra else ''}"
                     + (f" lr {recipe['lr']:g}" if "lr" in recipe else ""))
    if recipe.get("label_smoothing"):
        words.append(f"label smoothing {recipe['label_smoothing']:g}")
    if recipe.get("tta"):
        words.append("tta with flips")
    return ", ".join(words)


def build_parser(commands: dict[str, Callable[[argparse.Namespace], None]]
                 ) -> argparse.ArgumentParser:
    """The ``cnnumpy`` parser; ``commands`` maps each subcommand to the function it runs."""
    parser = Parser(prog="cnnumpy", description="Train and use CNNs in NumPy.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--threads", type=int_at_least(1), metavar="N",
                        help="threads for cnnumpy's kernels and the BLAS's products (default: "
                             "every CPU this process may use; under mpirun, shared among a "
                             "host's processes)")
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = "mnist-sample (bundled), mnist, fashion-mnist, or a folder (IDX files, with " \
                "an optional classes.txt of one class name per line, or one sub-folder of " \
                "images per class)"
    recipes = "; ".join(f"{name}: {recipe_text(d)}" for name, d in models.TRAINING_DEFAULTS.items())
    train = sub.add_parser(
        "train", help="train a CNN and report its test accuracy",
        description="Train a CNN and report its accuracy on the test set. The test set of an "
                    "IDX folder is its t10k-* files; a folder with train-* files only has its "
                    f"last {cli_data.HELD_OUT:,} images (at most a sixth) held out as the test "
                    "set, the same on every run, and never used for training or validation. "
                    "A folder of class sub-folders holds out a sixth of each class (rounded "
                    "down) as its test set: the images whose paths have the smallest SHA-1 "
                    "hashes, the same on every run and for every seed; evaluate scores that "
                    "same split. Hidden and non-image files are skipped. "
                    "--val-split takes the validation images from the end of the rest. "
                    "Defaults of --epochs, --batch-size, --val-split and --augment per model "
                    f"(others as lenet, without --augment): {recipes}.")
    train.add_argument("--data", default="mnist-sample", help=data_help)
    train.add_argument("--model", default="lenet",
                       help=f"{', '.join(sorted(models.MODELS))}, or CONFIG.json (a saved "
                            "get_config() of a Sequential or a graph Model)")
    train.add_argument("--epochs", type=int_at_least(1), default=None,
                       help="default: the model's recipe")
    train.add_argument("--batch-size", type=int_at_least(1), default=None,
                       help="default: as --epochs")
    train.add_argument("--optimizer", default=None, choices=["adam", "adamw", "sgd", "rmsprop"],
                       help="default: the model's recipe's (adam unless it says), with the "
                            "recipe's momentum and weight decay")
    train.add_argument("--lr", type=positive_float, default=None,
                       help="(initial) learning rate; default with the cosine schedule: the "
                            "model's recipe's for its optimizer (adam and adamw alike), else "
                            "2e-3 for adam/adamw and the optimizer's own default for others")
    train.add_argument("--label-smoothing", type=fraction, default=None, metavar="S",
                       help="train towards targets 1 - S + S/classes for the true class and "
                            "S/classes for the others (default: the model's recipe's, else 0)")
    train.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                       help="learning-rate schedule over the run (default: cosine decay)")
    train.add_argument("--val-split", type=fraction, default=None,
                       help="fraction of the training images (their tail) kept for validation; "
                            "default: the model's recipe")
    train.add_argument("--seed", type=int_at_least(0), default=0)
    train.add_argument("--out", default="model.safetensors", help="where to save the model")
    train.add_argument("--checkpoint-dir", help="save a checkpoint here after every epoch")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue training from a checkpoint, until epoch --epochs (more "
                            "than the checkpoint's); a cosine schedule is re-planned to reach "
                            "0 at that epoch, keeping the steps already taken; its optimizer, "
                            "loss and augmentation go on (--optimizer, --lr, "
                            "--label-smoothing and --augment are not applied)")
    train.add_argument("--plot", metavar="CURVES.png", help="draw the training curves")
    train.add_argument("--augment", nargs="?", const=True, default=None, type=augmentations,
                       metavar="shift,flip,erase",
                       help="random changes of the training images: shift (by up to 10%% of "
                            "the height and width; 5%% in resnet20's recipe), flip (left-right: "
                            "for classes that look the same mirrored, such as clothing; not "
                            "digits), erase (in half "
                            "the images, a box of noise over 2-33%% of the area); --augment "
                            "alone: shift, and flip with --data fashion-mnist (default: the "
                            "model's recipe)")
    train.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                       help="no augmentation")
    train.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                       help="also score the test set with each image's predictions averaged "
                            "with its mirror image's (test-time augmentation, for a model "
                            "trained with flips; default: the model's recipe when it flips)")
    train.add_argument("--class-names", metavar="A,B,C",
                       help="the class names saved with the model, in label order: names "
                            "separated by commas, or a file of one name per line (default: "
                            "the dataset's, classes.txt beside IDX files, the sub-folder "
                            "names, else the class numbers)")
    train.add_argument("--color-mode", default="auto", choices=["auto", "grayscale", "rgb"],
                       help="channels of a folder of images (default auto: rgb when the "
                            "images have colour); recorded in the model file")
    train.add_argument("--image-size", type=int_at_least(1), nargs=2, metavar=("H", "W"),
                       help="size of a folder's images, each padded to its aspect ratio and "
                            "resized (default: the most common size); recorded in the model file")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel under mpirun -n K: --batch-size is per process, "
                            "and rank 0 alone prints and writes files")
    train.set_defaults(func=commands["train"])
    evaluate = sub.add_parser(
        "evaluate", help="accuracy, per-class accuracy, confusion matrix",
        description="Score a saved model on the test set of --data (the one train reports). "
                    "A folder's images are converted as the model's training images were: "
                    "its recorded colour mode and size, each image padded to the size's "
                    "aspect ratio, then resized, and inverted as predict inverts it.")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", default="mnist-sample", help=data_help)
    evaluate.add_argument("--plot", metavar="CM.png", help="draw the confusion matrix")
    evaluate.add_argument("--tta", action="store_true",
                          help="average each image's predictions with its mirror image's "
                               "(test-time augmentation; the model must have been trained "
                               "with flips)")
    evaluate.add_argument("--all-images", action="store_true",
                          help="score every image of --data, not only its test set (the "
                               "t10k-* files, the held-out images, a class folder's test split)")
    evaluate.add_argument("--invert", action=argparse.BooleanOptionalAction, default=True,
                          help="invert each of a folder's images whose background is on the "
                               "other side of 0.5 from the training images', as predict does "
                               "(default: --invert)")
    evaluate.set_defaults(func=commands["evaluate"])
    predict = sub.add_parser("predict", help="classify image files")
    predict.add_argument("model")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--top-k", type=int_at_least(1), default=3)
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.add_argument("--invert", action=argparse.BooleanOptionalAction, default=True,
                         help=INVERT_HELP)
    predict.set_defaults(func=commands["predict"])
    summary = sub.add_parser("summary", help="print a saved model's layers")
    summary.add_argument("model")
    summary.set_defaults(func=commands["summary"])
    visualize = sub.add_parser("visualize", help="draw first-layer filters and feature maps")
    visualize.add_argument("model")
    visualize.add_argument("image")
    visualize.add_argument("--out", default="feature_maps.png")
    visualize.add_argument("--invert", action=argparse.BooleanOptionalAction, default=True,
                         help=INVERT_HELP)
    visualize.set_defaults(func=commands["visualize"])
    export = sub.add_parser("export", help="convert a saved model to ONNX")
    export.add_argument("model")
    export.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    export.set_defaults(func=commands["export"])
    serve = sub.add_parser(
        "serve", help="a local web page: draw or drop an image, watch the CNN classify it",
        description="Serve a web page, on this machine only by default, where you draw a "
                    "digit or drop an image and see the top classes, every convolution and "
                    "pooling layer's feature maps, the first layer's kernels, and how any one "
                    "output value was made. Images are converted as by 'cnnumpy predict'. "
                    "The page loads nothing from the internet. JSON API: POST /api/predict "
                    "(an image file as the body), POST /api/explain?layer=I&row=R&col=C"
                    "&channel=F, GET /api/model.")
    serve.add_argument("model", nargs="?", default=None,
                       help="a saved model (default: the digits model shipped with cnnumpy)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int_at_least(0), default=8000,
                       help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--open", action="store_true", help="open the page in a web browser")
    serve.add_argument("--max-body-mb", type=positive_float, default=10,
                       help="largest image file accepted, in MiB (default 10)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(func=commands["serve"])
    return parser
