"""Data for the command line: ``--data`` specs, and image files as a model's input."""

from __future__ import annotations

import os
import re
import warnings
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
    train: tuple[np.ndarray, np.ndarray] | None  # None: a folder of t10k-* files only
    test: tuple[np.ndarray, np.ndarray] | None
    class_names: list[str]
    held_out: bool = False  # the test set is the tail of the training files
    test_split: bool = False  # the test set is a class folder's fixed split (maybe empty)


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
    images (at most a sixth) are held out as the test set instead (see :func:`hold_out`);
    a folder of ``t10k-*`` files alone has no training set. Its class names come from a
    ``classes.txt`` beside the files (one per line), else the class numbers. Class
    sub-folders hold out a fixed sixth of each class as their test set (see
    :func:`cnnumpy.datasets.split.in_test_split`); hidden and non-image files are skipped,
    with one line saying how many; all their images, both parts, are converted with
    ``image_shape`` (a model's), else ``color_mode`` and ``image_size`` (see
    :func:`folder_options`). ``--color-mode rgb`` and ``--image-size`` are refused for IDX
    images.
    """
    digits = [str(d) for d in range(10)]
    if spec in ("mnist-sample", "mnist", "fashion-mnist"):
        _refuse_folder_flags(spec, color_mode, image_size)
    if spec == "mnist-sample":
        return Data(*datasets.load_mnist_sample(), digits)
    if spec == "mnist":
        return Data(*datasets.load_mnist(download=True), digits)
    if spec == "fashion-mnist":
        return Data(*datasets.load_fashion_mnist(download=True), FASHION_CLASSES)
    if not os.path.isdir(spec):
        raise CLIError(f"--data {spec!r}: expected mnist-sample, mnist, fashion-mnist or a folder")
    train, test = _idx_pair(spec, "train"), _idx_pair(spec, "t10k")
    if train is not None or test is not None:
        _refuse_folder_flags(spec, color_mode, image_size)
        labels = max(int(pair[1].max()) + 1 for pair in (train, test) if pair is not None)
        names = read_class_names(os.path.join(spec, "classes.txt"), labels)
        names = names or [str(c) for c in range(labels)]
        if train is None or test is not None or len(train[0]) < 6:
            return Data(train, test, names)
        return Data(*hold_out(*train), names, held_out=True)
    _refuse_incomplete_idx(spec)
    kwargs = folder_options(spec, image_shape, color_mode, image_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test, names = datasets.load_image_folder(spec, test_split=True, **kwargs)
    for warning in caught:  # how many hidden and non-image files were skipped: one line
        print(str(warning.message).removeprefix("load_image_folder: "))
    return Data(train, test, list(names), test_split=True)


def _refuse_incomplete_idx(folder: str) -> None:
    """A folder with IDX files but no complete images-and-labels pair is an error saying so,
    not a folder without class sub-folders."""
    found = sorted(f for f in os.listdir(folder) if re.search(r"-idx\d-ubyte(\.gz)?$", f))
    if found:
        raise CLIError(f"--data {folder!r}: holds {', '.join(found)} but no complete IDX pair "
                       "(train-images-idx3-ubyte with train-labels-idx1-ubyte, or the same "
                       "with t10k-; each may end in .gz)")


def read_class_names(path: str, labels: int = 0) -> list[str] | None:
    """The class names of a file of one name per line (``classes.txt``), or None if there is
    no such file; it must name at least ``labels`` classes, each once."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8-sig") as f:  # a BOM is no part of a name
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot read the class names ({exc})") from None
    return check_class_names(text.rstrip().splitlines(), labels, path)


def check_class_names(names: list[str], labels: int, where: str) -> list[str]:
    """``names`` stripped; refused if one is empty or repeated, or fewer than ``labels``."""
    names = [n.strip() for n in names]
    if not names or "" in names:
        raise CLIError(f"{where}: an empty class name (expected one name per class, "
                       "none of them empty)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CLIError(f"{where}: class name {twice[0]!r} appears more than once")
    if len(names) < labels:
        raise CLIError(f"{where}: names {len(names)} classes, but the labels need {labels}")
    return names


def parse_class_names(text: str, labels: int) -> list[str]:
    """``--class-names``: a file of one name per line, or names separated by commas."""
    if os.path.isfile(text):
        return read_class_names(text, labels) or []
    return check_class_names(text.split(","), labels, f"--class-names {text!r}")


AUGMENTATIONS = ("shift", "flip", "erase")
"""``--augment`` names: random shifts of up to 10% (a recipe's ``shift`` where it has one),
random left-right flips, random erasing (a box of noise in half the images)."""


def default_augmentations(spec: str) -> tuple[str, ...]:
    """What ``--augment`` alone (or a recipe with augmentation on) adds for ``--data spec``:
    shifts, and flips for the named dataset ``fashion-mnist`` (clothing looks the same
    mirrored; digits do not). Never decided by a folder's name."""
    return ("shift", "flip") if spec == "fashion-mnist" else ("shift",)


def evaluation_set(data: Data, spec: str, all_images: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The images ``evaluate`` scores: the test set (``t10k-*``, the held-out tail of an IDX
    folder, a class folder's fixed split), or with ``all_images`` every image."""
    parts = [p for p in (data.train, data.test) if p is not None]
    if all_images:
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    if data.test is None:
        return parts[0]  # an IDX folder too small to hold out a test set
    if len(data.test[0]) == 0:
        raise CLIError(f"--data {spec!r}: no test images (the test split takes a sixth of "
                       "each class, rounded down, and no class has 6 images); pass "
                       "--all-images to score every image")
    return data.test


def match_polarity(model: Sequential, x: np.ndarray, data: Data, invert: bool = True
                   ) -> np.ndarray:
    """A class folder's images (``x``) brought to the model's training polarity, each as
    ``predict`` brings one image (:func:`cnnumpy.datasets.images.match_polarity`), unless not
    ``invert``; IDX images are returned as they are."""
    if not (invert and data.test_split):
        return x
    from cnnumpy.datasets.images import match_polarity as per_image

    return per_image(x, datasets.image_settings(model)["background"])


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
        raise CLIError('reading images needs Pillow: pip install pillow') from None
    print(note)
    return {"image_size": image_size, "color_mode": color_mode, "pad_to_aspect_ratio": True}


def _refuse_folder_flags(spec: str, color_mode: str, image_size: tuple[int, int] | None
                         ) -> None:
    """``--image-size`` and ``--color-mode rgb`` are for image folders, not IDX images."""
    if image_size is not None or color_mode == "rgb":
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
        raise CLIError('reading images needs Pillow: pip install pillow') from None
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
