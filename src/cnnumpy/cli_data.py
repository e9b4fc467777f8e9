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


class Data(NamedTuple):
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    class_names: list[str]


def _idx_pair(folder: str, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    for ext in (".gz", ""):
        images = os.path.join(folder, f"{prefix}-images-idx3-ubyte{ext}")
        labels = os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ext}")
        if os.path.isfile(images) and os.path.isfile(labels):
            return datasets.load_idx(images, labels)
    return None


def load_data(spec: str, image_shape: tuple[int, ...] | None = None) -> Data:
    """Data for ``--data``: a named dataset, a folder of IDX files, or class sub-folders."""
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
        return Data(train, _idx_pair(spec, "t10k"), names or [str(c) for c in range(labels)])
    kwargs: dict[str, Any] = {}
    if image_shape is not None:
        kwargs = {"image_size": image_shape[:2],
                  "color_mode": "rgb" if image_shape[2] == 3 else "grayscale"}
    x, y, names = datasets.load_image_folder(spec, **kwargs)
    return Data((x, y), None, list(names))


def load_image(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """One image file as the model's input: converted to its channels, resized to its size."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise CLIError('reading images needs Pillow: pip install "cnnumpy[images]"') from None
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if shape[2] == 3 else "L").resize((shape[1], shape[0]))
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise CLIError(f"{path}: not a readable image ({exc})") from None
    return array.reshape(shape)


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
