"""Data for the command line: ``--data`` specs, and image files as a model's input."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cnnumpy import datasets

if TYPE_CHECKING:
    from cnnumpy.model import Sequential

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


class CLIError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


HELD_OUT = 10_000
"""Images held out as the test set of an IDX folder without ``t10k-*`` files (at most a sixth
of them): the last ones, so the split is the same on every run and for every seed."""


class Data(NamedTuple):
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    class_names: list[str]
    held_out: bool = False  # the test set is the tail of the training files


def hold_out(x: np.ndarray, y: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray],
                                                    tuple[np.ndarray, np.ndarray]]:
    """Split off the last ``min(HELD_OUT, len(x) // 6)`` images as a test set.

    Returns:
        ``(train, test)``, each an ``(images, labels)`` pair; ``test`` is empty below 6 images.
    """
    n_test = min(HELD_OUT, len(x) // 6)
    cut = len(x) - n_test
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def _idx_pair(folder: str, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    for ext in (".gz", ""):
        images = os.path.join(folder, f"{prefix}-images-idx3-ubyte{ext}")
        labels = os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ext}")
        if os.path.isfile(images) and os.path.isfile(labels):
            return datasets.load_idx(images, labels)
    return None


def load_data(spec: str, image_shape: tuple[int, ...] | None = None, color_mode: str = "auto",
              image_size: tuple[int, int] | None = None) -> Data:
    """Data for ``--data``: a named dataset, a folder of IDX files, or class sub-folders.

    An IDX folder's ``t10k-*`` files are its test set; without them, the last 10,000 training
    images (at most a sixth) are held out as the test set instead (see :func:`hold_out`).
    Class sub-folders have no test set; their images are read with ``image_shape`` (a
    model's), else ``color_mode`` and ``image_size`` (see :func:`folder_options`).
    """
    _check_folder_flags(spec, color_mode, image_size)
    digits = [str(d) for d in range(10)]
    if spec == "mnist-sample":
        return Data(*datasets.load_mnist_sample(), digits)
    if spec == "mnist":
        return Data(*datasets.load_mnist(download=True), digits)
    if spec == "fashion-mnist":
        return Data(*datasets.load_fashion_mnist(download=True), FASHION_CLASSES)
    if not os.path.isdir(spec):
        raise CLIError(f"--data {spec!r}: expected mnist-sample, mnist, fashion-mnist or a folder")
    train = _idx_pair(spec, "train")
    if train is not None:
        labels = int(train[1].max()) + 1
        names = FASHION_CLASSES if "fashion" in os.path.basename(os.path.abspath(spec)) else None
        names = names or [str(c) for c in range(labels)]
        test = _idx_pair(spec, "t10k")
        if test is not None or len(train[0]) < 6:
            return Data(train, test, names)
        return Data(*hold_out(*train), names, held_out=True)
    kwargs = folder_options(spec, image_shape, color_mode, image_size)
    x, y, names = datasets.load_image_folder(spec, **kwargs)
    return Data((x, y), None, list(names))


def folder_options(spec: str, image_shape: tuple[int, ...] | None, color_mode: str,
                   image_size: tuple[int, int] | None) -> dict[str, Any]:
    """``load_image_folder`` arguments for an image folder: a model's ``image_shape`` when
    given, else ``color_mode`` ("auto": rgb when an image has colour) and ``image_size``
    (default: the most common size), said in one line. Images are padded to the size's aspect
    ratio, never stretched."""
    if image_shape is not None:
        return {"image_size": tuple(image_shape[:2]), "pad_to_aspect_ratio": True,
                "color_mode": "rgb" if image_shape[2] == 3 else "grayscale"}
    try:
        color_mode, image_size, note = datasets.folder_settings(spec, color_mode, image_size)
    except ImportError:
        raise CLIError('reading images needs Pillow: pip install "cnnumpy[images]"') from None
    print(note)
    return {"image_size": image_size, "color_mode": color_mode, "pad_to_aspect_ratio": True}


def _check_folder_flags(spec: str, color_mode: str, image_size: tuple[int, int] | None) -> None:
    idx = any(os.path.isfile(os.path.join(spec, f"train-images-idx3-ubyte{ext}"))
              for ext in ("", ".gz"))
    if (image_size is not None or color_mode == "rgb") and (
            spec in ("mnist-sample", "mnist", "fashion-mnist") or idx):
        flag = "--image-size" if image_size is not None else "--color-mode rgb"
        raise CLIError(f"{flag}: applies to a folder of class sub-folders of images; --data "
                       f"{spec!r} holds grayscale IDX images of one size")


def preprocessing(x: np.ndarray) -> dict[str, Any]:
    """The settings a model trained on ``x`` records: its images' colour mode, size and
    background level (see :func:`cnnumpy.datasets.prepare_image`)."""
    return {"color_mode": "rgb" if x.shape[-1] == 3 else "grayscale",
            "image_size": [int(x.shape[1]), int(x.shape[2])],
            "background": round(datasets.background_level(x), 4)}


def load_image(path: str, settings: dict[str, Any], invert: bool = True) -> np.ndarray:
    """One image file as the model's input (:func:`cnnumpy.datasets.prepare_image`)."""
    try:
        from PIL import Image
    except ImportError:
        raise CLIError('reading images needs Pillow: pip install "cnnumpy[images]"') from None
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such image file")
    try:
        return datasets.prepare_image(path, settings, invert)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CLIError(f"{path}: not a readable image ({exc})") from None


def check_data_fits(model: Sequential, x: np.ndarray, y: np.ndarray, data: str,
                     source: str) -> None:
    """The images must have the model's input shape and the labels be among its classes."""
    if x.shape[1:] != model.input_shape:
        raise CLIError(f"--data {data!r}: images of shape {x.shape[1:]}, but the model "
                       f"{source!r} takes {model.input_shape}")
    classes = model.output_shape[-1]
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise CLIError(f"--data {data!r}: labels from {y.min()} to {y.max()}, but the model "
                       f"{source!r} has {classes} classes")


def class_names(model: Sequential, fallback: list[str], source: str) -> list[str]:
    """One name per model output: the model's own (a file with too few is refused), else
    ``fallback``, completed with class numbers."""
    classes = model.output_shape[-1]
    if model.class_names and len(model.class_names) < classes:
        raise CLIError(f"{source}: the file names {len(model.class_names)} classes but the "
                       f"model outputs {classes}")
    names = list(model.class_names or fallback)
    return (names + [str(c) for c in range(len(names), classes)])[:classes]
