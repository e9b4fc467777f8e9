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
import json
import sys

import numpy as np

import cnnumpy
from cnnumpy import cli_args, cli_data, distributed
from cnnumpy.cli_data import CLIError, check_data_fits, class_names, load_data, load_image
from cnnumpy.cli_train import check_writable, cmd_train


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.plot:
        check_writable(args.plot, "--plot")
    model = cnnumpy.load_model(args.model)
    data = load_data(args.data, model.input_shape)
    x, y = cli_data.evaluation_set(data, args.data, args.all_images)
    x = cli_data.match_polarity(model, x, data, args.invert)  # as predict converts each image
    check_data_fits(model, x, y, args.data, args.model)
    names = class_names(model, data.class_names, args.model)
    if args.tta and not cnnumpy.models.flips_horizontally(model):
        raise CLIError(f"--tta: {args.model!r} was not trained with flips (a RandomFlip layer "
                       "with a horizontal mode), so its mirror images are not its classes")
    probs = cnnumpy.models.predict_mirrored(model, x, 256) if args.tta \
        else model.predict(x, batch_size=256)
    predicted = probs.argmax(axis=1)
    loss = cnnumpy.losses.SparseCategoricalCrossentropy()(y, probs)
    print(f"{len(x):,} images - loss: {loss:.4f} - accuracy: {np.mean(predicted == y):.4f}"
          + (" (mirrored images averaged)" if args.tta else ""))
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

    check_writable(args.out, "--out")
    model = cnnumpy.load_model(args.model)
    image = load_image(args.image, cnnumpy.datasets.image_settings(model), args.invert)
    plot_feature_maps(model, image, args.out)
    print(f"Saved filters and feature maps to {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    check_writable(args.onnx, "--onnx")
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
    if args.threads:
        cnnumpy.backend.set_num_threads(args.threads)
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
