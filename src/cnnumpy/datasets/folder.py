"""Images in class sub-folders (``root/<class>/<image>``), read with Pillow."""

from __future__ import annotations

import os
import warnings

import numpy as np

from cnnumpy import backend
from cnnumpy.datasets import images
from cnnumpy.datasets.idx import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
"""File name endings read by :func:`load_image_folder` (case-insensitive)."""

_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "GIF"}  # MPO: a camera JPEG with extra frames
_COLOR_MODES = images.COLOR_MODES


def load_image_folder(root: str | os.PathLike, image_size: tuple[int, int] | None = None,
                      color_mode: str = "grayscale", validation_split: float = 0.0,
                      seed: int | None = None, on_error: str = "raise",
                      pad_to_aspect_ratio: bool = False) -> tuple:
    """Load a labelled image folder: one sub-folder per class, its images directly inside.

    Classes are the sub-folder names sorted; their index in that order is the label. PNG,
    JPEG, BMP and GIF files are read (the first frame of an animation). Hidden entries
    (names starting with ".") and plain files directly in ``root`` are ignored. Any other
    entry that is not a readable image, or a symlink leading outside ``root``, is an error,
    or with ``on_error="skip"`` a warning naming it, and it is left out.

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
        pad_to_aspect_ratio: with ``image_size``, pad each image to its aspect ratio with
            the image's own background colour (the median of its border) before resizing,
            so none is stretched: the conversion of :func:`cnnumpy.datasets.prepare_image`.

    Returns:
        ``(x, y, class_names)``, or with ``validation_split > 0``
        ``((x_train, y_train), (x_val, y_val), class_names)``; ``x`` float32 in [0, 1],
        ``y`` int64.

    Shape:
        ``x``: (N, H, W, C) with C = 1 (grayscale) or 3 (rgb); ``y``: (N,).

    Raises:
        DatasetError: ``root`` missing, no class folders, a class without images, an
            unreadable file (with ``on_error="raise"``), or images of different sizes.
        ImportError: Pillow is not installed.
    """
    image_size = _check_args(image_size, color_mode, validation_split, seed, on_error)
    image_module = _import_pillow()
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: no such folder")
    real_root = os.path.realpath(root)
    report = _Reporter(on_error)
    classes = [(name, path) for name, path in _entries(root)
               if os.path.isdir(path) and report.inside(path, real_root)]
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    images, labels, first = [], [], None
    for label, (name, folder) in enumerate(classes):
        count = 0
        for _, path in _entries(folder):
            if not report.inside(path, real_root) or not _is_image_file(path, report):
                continue
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
            count += 1
        if count == 0:
            raise DatasetError(f"{folder}: class folder {name!r} holds no readable images")
        labels.extend([label] * count)
    x, y = np.stack(images), np.asarray(labels, dtype=np.int64)
    class_names = [name for name, _ in classes]
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


def _entries(folder: str) -> list[tuple[str, str]]:
    """Sorted ``(name, path)`` of the non-hidden entries of ``folder``."""
    return [(name, os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if not name.startswith(".")]


def _is_image_file(path: str, report: _Reporter) -> bool:
    if os.path.isdir(path):
        report.bad(path, "a folder inside a class folder; images must sit directly in it")
    elif not os.path.isfile(path):
        report.bad(path, "not a regular file (a broken symlink?)")
    elif not path.lower().endswith(IMAGE_EXTENSIONS):
        report.bad(path, f"not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
    elif os.path.getsize(path) == 0:
        report.bad(path, "empty file (0 bytes)")
    else:
        return True
    return False


def _read_image(image_module, path: str, color_mode: str, image_size: tuple[int, int] | None,
                pad: bool = False) -> np.ndarray:
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


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError('load_image_folder needs Pillow to read images: '
                          'pip install "cnnumpy[images]"') from exc
    return Image


def _check_args(image_size, color_mode, validation_split, seed, on_error):
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
