"""One image as a model's input: the conversion that ``cnnumpy predict``, ``evaluate``,
``visualize`` and training on an image folder share, so that an image is seen the same way
when training and after.

The steps of :func:`prepare_image`: decode to float32 in [0, 1] with the model's channels
(``"grayscale"`` or ``"rgb"``); pad to the model's aspect ratio with the image's own
background colour, so nothing is stretched; resize (bilinear); and, when the model's training
images have a clear background (dark or light) and this image's is on the other side of 0.5,
invert it (ink on paper becomes light on dark, as MNIST's digits are).

A model's settings (:func:`image_settings`) are a dict::

    {"color_mode": "grayscale" | "rgb", "image_size": [height, width],
     "background": float in [0, 1] or None}

saved in the model file by ``cnnumpy train``; a model without them (an older file, one built
in Python) gets them from its input shape, without a background, so it is never inverted.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cnnumpy.model import Sequential

COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}
"""Each colour mode's Pillow mode and number of channels."""

CLEAR_MARGIN = 0.25
"""A training background level within this of 0.5 (a photo's mixed borders) is not clear
enough to say which side is background, and inputs are then never inverted."""

_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # 16/32-bit and float pixels
_COLOR_PIL_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}


def to_array(image: Any, color_mode: str) -> np.ndarray:
    """A decoded Pillow image as float32 ``(H, W, C)`` in [0, 1]; any alpha is dropped.

    Shape:
        ``(H, W, 1)`` for ``"grayscale"``, ``(H, W, 3)`` for ``"rgb"``.
    """
    mode, channels = COLOR_MODES[color_mode]
    if image.mode in _WIDE_MODES:
        scale = 1.0 if image.mode == "F" else 65535.0
        image = image.convert("F")
    else:
        scale = 255.0
        image = (image.convert("RGBA") if image.mode == "P" else image).convert(mode)
    pixels = np.clip(np.asarray(image, dtype=np.float32) / np.float32(scale), 0.0, 1.0)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., np.newaxis], channels, axis=-1)
    return pixels


def _border(x: np.ndarray) -> np.ndarray:
    """The outer ring (a sixteenth of the shorter side, at least 1 pixel) of ``(..., H, W, C)``
    images, as ``(..., K, C)``."""
    h, w = x.shape[-3:-1]
    k = max(1, min(h, w) // 16)
    if 2 * k >= min(h, w):
        return x.reshape(*x.shape[:-3], h * w, x.shape[-1])
    ring = [x[..., :k, :, :], x[..., -k:, :, :], x[..., k:-k, :k, :], x[..., k:-k, -k:, :]]
    return np.concatenate([r.reshape(*x.shape[:-3], -1, x.shape[-1]) for r in ring], axis=-2)


def border_level(x: np.ndarray) -> np.ndarray:
    """Each image's background level: the median brightness (mean of the channels) of its
    border pixels.

    Shape:
        ``x``: ``(H, W, C)`` or ``(N, H, W, C)``; returns ``()`` or ``(N,)``.
    """
    return np.median(_border(np.asarray(x)).mean(axis=-1), axis=-1)


def background_level(x: np.ndarray, max_images: int = 2000) -> float:
    """The training images' background level: the median of their :func:`border_level` over
    up to ``max_images`` of them, evenly spaced (MNIST: 0.0, light digits on black).

    Shape:
        ``x``: ``(N, H, W, C)``.
    """
    step = max(1, -(-len(x) // max_images))
    return float(np.median(border_level(np.asarray(x)[::step])))


def resize(pixels: np.ndarray, image_size: tuple[int, int], pad: bool = True) -> np.ndarray:
    """Pad ``pixels`` to the aspect ratio of ``image_size`` with the per-channel median of its
    border, centred (unless ``pad`` is False), then resize it (bilinear, with antialiasing
    when shrinking).

    Shape:
        ``(H, W, C)`` to ``(*image_size, C)``.
    """
    from PIL import Image

    h, w, c = pixels.shape
    th, tw = int(image_size[0]), int(image_size[1])
    if (h, w) == (th, tw):
        return pixels
    ph, pw = max(h, -(-w * th // tw)), max(w, -(-h * tw // th))  # the smallest box holding it
    if pad and (ph, pw) != (h, w):
        fill = np.median(_border(pixels), axis=0).astype(np.float32)
        box = np.empty((ph, pw, c), np.float32)
        box[...] = fill
        top, left = (ph - h) // 2, (pw - w) // 2
        box[top:top + h, left:left + w] = pixels
        pixels = box
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., i]), mode="F")
                           .resize((tw, th), Image.BILINEAR)) for i in range(c)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def match_polarity(pixels: np.ndarray, background: float | None) -> np.ndarray:
    """``1 - image`` for each image whose own :func:`border_level` is on the other side of
    0.5 from ``background`` (the training images'), when that is clearly dark or light (see
    :data:`CLEAR_MARGIN`); other images unchanged.

    Shape:
        ``(H, W, C)`` or ``(N, H, W, C)``, returned the same.
    """
    if background is None or abs(background - 0.5) < CLEAR_MARGIN:
        return pixels
    flip = (border_level(pixels) > 0.5) != (background > 0.5)  # () or (N,)
    if not np.any(flip):
        return pixels
    return np.where(flip[..., None, None, None], 1.0 - pixels, pixels).astype(pixels.dtype)


def image_settings(model: Sequential) -> dict[str, Any]:
    """The conversion settings of ``model``: those saved with it (``model.preprocessing``),
    else its input shape's size and channels without a background (never inverted)."""
    if model.preprocessing is not None:
        return dict(model.preprocessing)
    if model.input_shape is None:
        raise ValueError(f"image_settings: the model {model.name!r} has no input shape yet; "
                         "build it or give its first layer input_shape")
    h, w, c = model.input_shape
    return {"color_mode": "rgb" if c == 3 else "grayscale", "image_size": [h, w],
            "background": None}


def check_settings(settings: Any, input_shape: tuple[int, ...] | None = None,
                   where: str = "image settings") -> None:
    """Raise ``ValueError`` unless ``settings`` is a dict of exactly ``color_mode``,
    ``image_size`` and ``background`` (see the module docstring) that fits ``input_shape``."""
    ok = isinstance(settings, dict) and set(settings) == {"color_mode", "image_size",
                                                          "background"}
    size: Any
    level: Any
    size, level = (settings.get("image_size"), settings.get("background")) if ok else (0, 0)
    ok = ok and settings["color_mode"] in COLOR_MODES and isinstance(size, (list, tuple)) \
        and len(size) == 2 and all(type(v) is int and v > 0 for v in size) \
        and (level is None or (type(level) in (int, float) and 0 <= level <= 1))
    if not ok:
        raise ValueError(f"{where}: expected {{'color_mode': 'grayscale' or 'rgb', "
                         f"'image_size': [height, width], 'background': a number in [0, 1] or "
                         f"None}}, received {settings!r}")
    if input_shape is not None:
        shape = (*size, COLOR_MODES[settings["color_mode"]][1])
        if tuple(input_shape) != shape:
            raise ValueError(f"{where}: images of shape {shape} do not fit the model's "
                             f"input shape {tuple(input_shape)}")


def prepare_image(image: Any, settings: dict[str, Any], invert: bool = True) -> np.ndarray:
    """One image as a model's input, converted exactly as ``cnnumpy predict`` does.

    Args:
        image: the file's bytes, a path, or a Pillow image.
        settings: the model's :func:`image_settings` (``color_mode``, ``image_size``,
            ``background``).
        invert: bring the image to the training images' polarity (see
            :func:`match_polarity`); ``False`` keeps its own.

    Returns:
        float32 in [0, 1], ready for ``model.predict(x[None])``.

    Shape:
        ``(height, width, C)`` of ``settings["image_size"]``, C = 1 or 3.

    Raises:
        ValueError: ``settings`` are malformed.
        OSError: the bytes or file are not an image Pillow can read.
    """
    from PIL import Image

    check_settings(settings, where="prepare_image")
    color_mode, size = settings["color_mode"], settings["image_size"]
    if isinstance(image, Image.Image):
        image.load()
        pixels = to_array(image, color_mode)
    else:
        source = io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else os.fspath(image)
        with Image.open(source) as opened:
            opened.load()
            pixels = to_array(opened, color_mode)
    background = settings.get("background")
    pixels = resize(pixels, (size[0], size[1]))
    return match_polarity(pixels, background) if invert else pixels


def folder_settings(root: str | os.PathLike, color_mode: str = "auto",
                    image_size: tuple[int, int] | None = None,
                    sample: int = 256) -> tuple[str, tuple[int, int], str]:
    """Resolve ``color_mode="auto"`` and a missing ``image_size`` for an image folder
    (``root/<class>/<image>``), reading only the image files' headers, and the pixels of up to
    ``sample`` of them, evenly spaced, to look for colour.

    Returns:
        ``(color_mode, image_size, note)``: ``"rgb"`` when any sampled image has colour
        (channels that differ), else ``"grayscale"``; the most common ``(height, width)``;
        and one line saying what was chosen. Unreadable files are passed over here (loading
        reports them).

    Raises:
        DatasetError: ``root`` is missing or holds no class sub-folders.
    """
    from PIL import Image

    from cnnumpy.datasets.folder import image_files

    files = image_files(root, on_error="skip")  # the files load_image_folder reads
    sizes: dict[tuple[int, int], int] = {}
    maybe_colour = []
    for path in files:
        try:
            with Image.open(path) as im:
                size = (im.height, im.width)
                if im.mode in _COLOR_PIL_MODES:
                    maybe_colour.append(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
        sizes[size] = sizes.get(size, 0) + 1
    notes = []
    if color_mode == "auto":
        step = max(1, -(-len(maybe_colour) // sample))
        colour = any(_has_colour(path) for path in maybe_colour[::step])
        color_mode = "rgb" if colour else "grayscale"
        notes.append(f"{color_mode} ({'colour found' if colour else 'no colour found'}; "
                     "--color-mode to choose)")
    else:
        notes.append(color_mode)
    if image_size is None:
        image_size = max(sizes, key=sizes.__getitem__) if sizes else (28, 28)
        others = sum(sizes.values()) - sizes.get(image_size, 0)
        notes.append(f"{image_size[0]}x{image_size[1]} (the most common size"
                     + (f"; {others:,} other images padded and resized" if others else "")
                     + "; --image-size H W to choose)")
    else:
        notes.append(f"{image_size[0]}x{image_size[1]}")
    return color_mode, (int(image_size[0]), int(image_size[1])), "Images: " + ", ".join(notes)


def _has_colour(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_array(im, "rgb")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return bool(np.any(rgb.max(axis=-1) - rgb.min(axis=-1) > 1.5 / 255))
