"""Images in class sub-folders (``root/<class>/<image>``), read with Pillow."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from cnnumpy import backend
from cnnumpy.datasets import images
from cnnumpy.datasets.idx import DatasetError
from cnnumpy.datasets.split import in_test_split, path_hashes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
"""File name endings read by :func:`load_image_folder` (case-insensitive)."""

_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "GIF"}  # MPO: a camera JPEG with extra frames
_COLOR_MODES = images.COLOR_MODES


def load_image_folder(root: str | os.PathLike, image_size: tuple[int, int] | None = None,
                      color_mode: str = "grayscale", validation_split: float = 0.0,
                      seed: int | None = None, on_error: str = "raise",
                      test_split: bool = False, pad_to_aspect_ratio: bool = False) -> tuple:
    """Load a labelled image folder: one sub-folder per class, its images directly inside.

    Classes are the sub-folder names sorted; their index in that order is the label. PNG,
    JPEG, BMP and GIF files are read (the first frame of an animation). Hidden files and
    folders (names starting with "."), files whose names do not end in one of
    ``IMAGE_EXTENSIONS`` (``README.txt``, ``Thumbs.db``) and plain files directly in ``root``
    are skipped, and one ``UserWarning`` says how many. A file named as an image that does
    not decode, a sub-folder of a class folder, or a symlink leading outside ``root`` is an
    error, or with ``on_error="skip"`` a warning naming it, and it is left out.

    Args:
        root: the folder holding the class sub-folders.
        image_size: ``(height, width)`` to resize every image to (bilinear). Without it all
            images must share one size.
        color_mode: ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels); images are
            converted as needed and any alpha channel is dropped.
        validation_split: fraction in [0, 1) of the images held out for validation, taken
            after a seeded shuffle. With 0 the images come back in folder order, unshuffled.
        seed: seed of the shuffle; default: draw from :func:`cnnumpy.backend.rng`.
        on_error: ``"raise"`` or ``"skip"`` for unreadable files and outside symlinks.
        test_split: hold out a fixed, stratified test set: in each class, the sixth
            (rounded down) of its images whose paths relative to ``root`` have the smallest
            SHA-1 hashes (:func:`cnnumpy.datasets.split.in_test_split`). The same on every
            run and machine, for every seed and listing order. Not with ``validation_split``.
        pad_to_aspect_ratio: with ``image_size``, pad each image to its aspect ratio with
            the image's own background colour (the median of its border) before resizing,
            so none is stretched: the conversion of :func:`cnnumpy.datasets.prepare_image`.

    Returns:
        ``(x, y, class_names)``, or with ``validation_split > 0``
        ``((x_train, y_train), (x_val, y_val), class_names)``, or with ``test_split``
        ``((x_train, y_train), (x_test, y_test), class_names)``, each part in the order of
        its images' hashes (a fixed mix of the classes, so that any tail of the training
        part holds every class); ``x`` float32 in [0, 1], ``y`` int64.

    Shape:
        ``x``: (N, H, W, C) with C = 1 (grayscale) or 3 (rgb); ``y``: (N,).

    Raises:
        DatasetError: ``root`` missing, no class folders, a class without images, an
            unreadable file (with ``on_error="raise"``), or images of different sizes.
        ImportError: Pillow is not installed.
    """
    image_size = _check_args(image_size, color_mode, validation_split, seed, on_error)
    if not isinstance(test_split, bool):
        raise ValueError(f"load_image_folder: test_split must be True or False, "
                         f"received test_split={test_split!r}")
    if test_split and validation_split:
        raise ValueError("load_image_folder: test_split and validation_split cannot be "
                         "combined; take the validation images from the training part")
    image_module = _import_pillow()
    root = os.fspath(root)
    report = _Reporter(on_error)
    classes, skipped = _list_images(root, report)
    images, labels, kept, first = [], [], [], None
    for label, (name, folder, files) in enumerate(classes):
        count = 0
        for entry, path in files:
            try:
                pixels = _read_image(image_module, path, color_mode, image_size,
                                     pad_to_aspect_ratio)
            except _Unreadable as exc:
                report.bad(path, str(exc))
                continue
            if first is None:
                first = (path, pixels.shape[:2])
            elif pixels.shape[:2] != first[1]:
                raise DatasetError(
                    f"{path}: size {pixels.shape[:2]} (height, width) differs from "
                    f"{first[1]} of {first[0]}; pass image_size=(h, w) to resize all images")
            images.append(pixels)
            kept.append(f"{name}/{entry}")
            count += 1
        if count == 0:
            raise DatasetError(f"{folder}: class folder {name!r} holds no readable images")
        labels.extend([label] * count)
    _warn_skipped(root, skipped)
    x, y = np.stack(images), np.asarray(labels, dtype=np.int64)
    class_names = [name for name, _, _ in classes]
    if test_split:
        mask, order = in_test_split(kept, y), np.argsort(path_hashes(kept), kind="stable")
        train, test = order[~mask[order]], order[mask[order]]
        return (x[train], y[train]), (x[test], y[test]), class_names
    if validation_split == 0:
        return x, y, class_names
    n_val = int(len(x) * validation_split)
    if not 0 < n_val < len(x):
        raise DatasetError(f"{root}: validation_split={validation_split} of {len(x)} images "
                           f"gives {n_val} validation images; need at least 1 on each side")
    generator = np.random.default_rng(int(seed)) if seed is not None else backend.rng()
    order = generator.permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val]), class_names


def image_files(root: str | os.PathLike, on_error: str = "raise") -> list[str]:
    """The paths of the image files of an image folder (``root/<class>/<image>``), class by
    class in sorted order: exactly the files :func:`load_image_folder` reads, chosen by the
    same rules (hidden and non-image entries left out silently here).

    Raises:
        DatasetError: ``root`` missing or without class folders, or (with
            ``on_error="raise"``) an entry :func:`load_image_folder` would refuse.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"image_files: on_error must be 'raise' or 'skip', "
                         f"received on_error={on_error!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on_error="skip": load_image_folder tells
        classes, _ = _list_images(os.fspath(root), _Reporter(on_error))
    return [path for _, _, files in classes for _, path in files]


def _list_images(root: str, report: _Reporter) -> tuple[list, list[str]]:
    """The one place that decides which files of an image folder are its images.

    Returns:
        ``(classes, skipped)``: ``(name, folder, [(entry, path), ...])`` per class folder, in
        sorted order, and the hidden and non-image entries left out. Sub-folders of class
        folders, broken symlinks, empty files and symlinks leading outside ``root`` go to
        ``report``.
    """
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: no such folder")
    real_root = os.path.realpath(root)
    skipped: list[str] = []
    classes: list[tuple[str, str, list[tuple[str, str]]]] = []
    for name, path in _entries(root, skipped):
        if not os.path.isdir(path):
            skipped.append(path)  # a README beside the class folders
        elif report.inside(path, real_root):
            classes.append((name, path, []))
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    for _, folder, files in classes:
        for entry, path in _entries(folder, skipped):
            if not os.path.isdir(path) and not entry.lower().endswith(IMAGE_EXTENSIONS):
                skipped.append(path)  # notes.txt, Thumbs.db
            elif report.inside(path, real_root) and _is_image_file(path, report):
                files.append((entry, path))
    return classes, skipped


def _warn_skipped(root: str, skipped: list[str]) -> None:
    """One warning for all the hidden and non-image entries left out."""
    if not skipped:
        return
    names = [os.path.relpath(p, root).replace(os.sep, "/") for p in skipped]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    files = "file" if len(names) == 1 else "files"
    warnings.warn(f"load_image_folder: {root}: skipped {len(names)} {files} that are hidden or "
                  f"not images ({', '.join(IMAGE_EXTENSIONS)}): {shown}", UserWarning,
                  stacklevel=3)


class _Unreadable(Exception):
    """A file that is not an image we can read."""


class _Reporter:
    """Raise a DatasetError for a bad entry, or warn and let the caller skip it."""

    def __init__(self, on_error: str):
        self.skip = on_error == "skip"

    def bad(self, path: str, reason: str) -> None:
        message = f"{path}: {reason}"
        if not self.skip:
            raise DatasetError(message)
        warnings.warn(f"load_image_folder: skipped {message}", UserWarning, stacklevel=2)

    def inside(self, path: str, real_root: str) -> bool:
        """True when ``path`` resolves inside ``real_root``; else report it."""
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) == real_root:
            return True
        self.bad(path, f"symlink leading outside the root folder (to {real}); refused")
        return False


def _entries(folder: str, hidden: list[str]) -> list[tuple[str, str]]:
    """Sorted ``(name, path)`` of the entries of ``folder``; hidden ones (``.DS_Store``,
    ``.git``) are appended to ``hidden`` instead."""
    entries = [(name, os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    hidden.extend(path for name, path in entries if name.startswith("."))
    return [(name, path) for name, path in entries if not name.startswith(".")]


def _is_image_file(path: str, report: _Reporter) -> bool:
    if os.path.isdir(path):
        report.bad(path, "a folder inside a class folder; images must sit directly in it")
    elif not os.path.isfile(path):
        report.bad(path, "not a regular file (a broken symlink?)")
    elif os.path.getsize(path) == 0:
        report.bad(path, "empty file (0 bytes)")
    else:
        return True
    return False


def _read_image(image_module: Any, path: str, color_mode: str,
                image_size: tuple[int, int] | None, pad: bool = False) -> np.ndarray:
    """Decode one image to float32 (H, W, C) in [0, 1], or raise ``_Unreadable``."""
    try:
        with image_module.open(path) as im:
            if im.format not in _FORMATS:
                raise _Unreadable(f"{im.format} image; only PNG, JPEG, BMP and GIF are read")
            im.load()
            pixels = images.to_array(im, color_mode)
        if image_size is not None:
            pixels = images.resize(pixels, image_size, pad=pad)
    except _Unreadable:
        raise
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as exc:
        raise _Unreadable(f"not a readable image ({exc})") from None
    return pixels


def _import_pillow() -> Any:
    """``PIL.Image``, or an ImportError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError('load_image_folder needs Pillow to read images: '
                          'pip install pillow') from exc
    return Image


def _check_args(image_size: Any, color_mode: Any, validation_split: Any, seed: Any,
                on_error: Any) -> tuple[int, int] | None:
    """``image_size`` as ``(height, width)`` (or None); a ValueError for any bad argument."""
    where = "load_image_folder"
    if image_size is not None:
        ok = (isinstance(image_size, (tuple, list)) and len(image_size) == 2
              and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                      for v in image_size))
        if not ok:
            raise ValueError(f"{where}: image_size must be (height, width) of positive ints, "
                             f"received image_size={image_size!r}")
        image_size = (int(image_size[0]), int(image_size[1]))
    if not isinstance(color_mode, str) or color_mode not in _COLOR_MODES:
        raise ValueError(f"{where}: color_mode must be 'grayscale' or 'rgb', "
                         f"received color_mode={color_mode!r}")
    numbers = (int, float, np.integer, np.floating)
    if (isinstance(validation_split, bool) or not isinstance(validation_split, numbers)
            or not 0 <= validation_split < 1):
        raise ValueError(f"{where}: validation_split must be a number in [0, 1), "
                         f"received validation_split={validation_split!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"{where}: seed must be a non-negative int or None, "
                         f"received seed={seed!r}")
    if not isinstance(on_error, str) or on_error not in ("raise", "skip"):
        raise ValueError(f"{where}: on_error must be 'raise' or 'skip', "
                         f"received on_error={on_error!r}")
    return image_size
