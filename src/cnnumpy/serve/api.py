"""What ``cnnumpy serve``'s JSON API computes, without any HTTP: an image file's bytes in,
the top classes and every convolution and pooling layer's feature maps out, or how one
output value was made.

An image goes through :func:`cnnumpy.datasets.prepare_image` with the model's
:func:`~cnnumpy.datasets.image_settings`, the conversion ``cnnumpy predict`` uses, so the page
and the command line give the same answer for the same file.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

import numpy as np

from cnnumpy.datasets.images import image_settings, prepare_image
from cnnumpy.feature_maps import layer_outputs
from cnnumpy.layers import Conv2D
from cnnumpy.layers.pooling import _Pool2D
from cnnumpy.serve.explain import explain, explainable

FORMATS = ("PNG", "JPEG", "BMP", "GIF")
"""The image formats the API decodes (Pillow's names)."""

MAX_PIXELS = 4096 * 4096
"""The default limit on an image's width times height, checked from its header before the
pixels are decoded (a small file can claim billions of pixels: a decompression bomb)."""


class BadInput(ValueError):
    """A request the API refuses: ``status`` is the HTTP status (4xx) it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _shown(layer: Any) -> bool:
    """Feature maps are shown for every convolution and pooling layer with image outputs."""
    return isinstance(layer, (Conv2D, _Pool2D)) and len(layer.input_shape or ()) == 3


def _encode(maps: np.ndarray) -> dict[str, Any]:
    """Feature maps as bytes for greyscale tiles: one scale for the whole layer (its minimum
    black, its maximum white), each value rounded to 0..255, channel after channel.

    Shape:
        maps: ``(H, W, C)``; ``data`` decodes to ``C * H * W`` bytes, channel-major.
    """
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else np.zeros_like(maps)
    pixels = np.round(np.transpose(scaled, (2, 0, 1)) * 255).astype(np.uint8)
    return {"shape": list(maps.shape), "min": low, "max": high,
            "data": base64.b64encode(pixels.tobytes()).decode("ascii")}


class Engine:
    """A loaded model and the API's computations on it, safe to call from many threads (one
    request runs the model at a time: layers keep caches of their last forward pass).

    Args:
        model: a built ``Sequential`` (or any model with ``layers``, ``predict``,
            ``input_shape``, ``class_names``, ``preprocessing``).
        max_pixels: the largest ``width * height`` an image may declare.
        invert: bring images to the training images' polarity, as ``cnnumpy predict``.
    """

    def __init__(self, model: Any, max_pixels: int = MAX_PIXELS, invert: bool = True) -> None:
        self.model = model
        self.settings = image_settings(model)
        self.max_pixels = int(max_pixels)
        self.invert = invert
        self._lock = threading.Lock()
        classes = model.output_shape[-1]
        names = list(model.class_names or [])
        self.class_names = names if len(names) == classes else [str(c) for c in range(classes)]

    def image(self, body: bytes) -> np.ndarray:
        """The request body (an image file) as the model's input.

        Raises:
            BadInput: empty, not a PNG/JPEG/BMP/GIF image, or over :attr:`max_pixels`.
        """
        from PIL import Image, UnidentifiedImageError

        if not body:
            raise BadInput("empty body: send the bytes of a PNG, JPEG, BMP or GIF image")
        try:
            # the header only: the pixels are decoded after the size check below
            opened = Image.open(io.BytesIO(body), formats=FORMATS)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise BadInput("the body is not a PNG, JPEG, BMP or GIF image") from None
        except Image.DecompressionBombError as exc:
            raise BadInput(f"image too large to decode: {exc}", 413) from None
        with opened:
            pixels = opened.width * opened.height
            if pixels > self.max_pixels:
                raise BadInput(f"image of {opened.width} x {opened.height} = {pixels:,} pixels "
                               f"is over the limit of {self.max_pixels:,} pixels", 413)
            try:
                return prepare_image(opened, self.settings, self.invert)
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise BadInput(f"the {opened.format} image could not be decoded "
                               f"({exc})") from None

    def predict(self, body: bytes, top: int | None = None) -> dict[str, Any]:
        """``{"top": [{"label", "index", "probability"}...], "input": ..., "layers": [...]}``:
        the classes by falling probability (``top`` of them, default all), the image as the
        model sees it, and the feature maps of every convolution and pooling layer."""
        x = self.image(body)
        with self._lock:
            probs = np.asarray(self.model.predict(x[np.newaxis]))[0]
            trace = layer_outputs(self.model, x)
        order = np.argsort(-probs, kind="stable")[:top]
        layers = [{"index": t.index, "name": t.layer.name, "type": type(t.layer).__name__,
                   "explainable": explainable(t.layer), **_encode(t.output)}
                  for t in trace if _shown(t.layer)]
        return {"top": [{"label": self.class_names[c], "index": int(c),
                         "probability": float(probs[c])} for c in order],
                "input": _encode(x), "layers": layers}

    def explain(self, body: bytes, layer: int, row: int, col: int,
                channel: int) -> dict[str, Any]:
        """How the output of layer number ``layer`` (in ``model.layers``) at
        ``(row, col, channel)`` was made for the image in ``body``
        (:func:`cnnumpy.serve.explain.explain`)."""
        if not 0 <= layer < len(self.model.layers):
            raise BadInput(f"layer {layer} does not exist: the model has layers 0 to "
                           f"{len(self.model.layers) - 1}")
        x = self.image(body)
        with self._lock:
            trace = layer_outputs(self.model, x)
        try:
            return explain(trace[layer], row, col, channel)
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def model_info(self) -> dict[str, Any]:
        """The model's summary: each layer's name, type, output shape and parameter count,
        the totals, the first convolution's kernels and the summary's text."""
        from cnnumpy.summary import summary_table

        model = self.model
        rows = [{"index": i, "name": layer.name, "type": type(layer).__name__,
                 "output_shape": [None, *layer.compute_output_shape(layer.input_shape)],
                 "params": layer.count_params(), "shown": _shown(layer),
                 "explainable": explainable(layer)} for i, layer in enumerate(model.layers)]
        convs = [layer for layer in model.layers if isinstance(layer, Conv2D)]
        kernels = None
        if convs:
            kernel = np.asarray(convs[0].params["kernel"], dtype=np.float64)
            kernels = {"layer": convs[0].name, **_encode(kernel.mean(axis=2))}
        return {"name": model.name, "input_shape": list(model.input_shape),
                "class_names": self.class_names, "image_settings": self.settings,
                "layers": rows, "total_params": model.count_params(),
                "first_kernels": kernels, "summary": summary_table(model)}
