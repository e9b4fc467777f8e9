"""What ``cnnumpy serve``'s JSON API computes, without any HTTP: an image file's bytes in,
the top classes and every convolution and pooling layer's feature maps out, or how one
output value was made.

Layers are numbered as :func:`cnnumpy.feature_maps.layer_outputs` numbers them: a
``Sequential``'s layers in order; a graph model's nodes in the order they run (the input
first, a shared layer once per call). In a graph, the feature maps of the merges that add,
subtract, multiply or average (a residual block's sum) are shown too; a concatenation's are
not, as they are its inputs' maps, already shown.

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
from cnnumpy.feature_maps import call_name, is_convolution, kernel_tiles, layer_outputs
from cnnumpy.layers import Concatenate
from cnnumpy.layers.merge import Merge
from cnnumpy.layers.pooling import _Pool2D
from cnnumpy.serve.explain import explain, explainable

FORMATS = ("PNG", "JPEG", "BMP", "GIF")
"""The image formats the API decodes (Pillow's names)."""

MAX_PIXELS = 4096 * 4096
"""The default limit on an image's width times height, checked from its header before the
pixels are decoded (a small file can claim billions of pixels: a decompression bomb)."""

DECODING = 2
"""How many request images are decoded at the same time, at most."""


class BadInput(ValueError):
    """A request the API refuses: ``status`` is the HTTP status (4xx) it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _shown(layer: Any, output_shape: tuple[int, ...]) -> bool:
    """Feature maps are shown for every convolution, pooling and merge (but concatenation)
    layer with image outputs."""
    return len(output_shape) == 3 and (is_convolution(layer) or isinstance(layer, _Pool2D) or (
        isinstance(layer, Merge) and not isinstance(layer, Concatenate)))


def _rows(model: Any) -> list[dict[str, Any]]:
    """One row per entry of :func:`layer_outputs`: its index, name, type, output shape,
    parameter count (on a shared layer's first call only) and the entries it reads."""
    nodes = getattr(model, "_nodes", None)
    if nodes is None:  # a stack: each layer reads the one before it
        steps = [(layer, layer.compute_output_shape(layer.input_shape), 0,
                  [model.layers[i - 1].name] if i else []) for i, layer in
                 enumerate(model.layers)]
    else:
        steps = [(n.layer, n.output.shape, model.node_index(n),
                  [call_name(t.layer, model.node_index(t.node)) for t in n.inputs])
                 for n in nodes]
    return [{"index": i, "name": call_name(layer, call),
             "type": type(layer).__name__, "output_shape": [None, *shape],
             "params": 0 if call else layer.count_params(), "connected_to": sources,
             "shown": _shown(layer, tuple(shape)), "explainable": explainable(layer)}
            for i, (layer, shape, call, sources) in enumerate(steps)]


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
        model: a built ``Sequential`` or a graph ``Model`` (or any model with ``layers``,
            ``predict``, ``input_shape``, ``class_names``, ``preprocessing``).
        max_pixels: the largest ``width * height`` an image may declare.
        invert: bring images to the training images' polarity, as ``cnnumpy predict``.
    """

    def __init__(self, model: Any, max_pixels: int = MAX_PIXELS, invert: bool = True) -> None:
        self.model = model
        self.settings = image_settings(model)
        self.max_pixels = int(max_pixels)
        self.invert = invert
        self._lock = threading.Lock()
        # a small image file may declare up to max_pixels pixels: decoding one takes up to a
        # few hundred MB, so at most DECODING images are decoded at once (memory stays bounded
        # whatever the number of requests)
        self._decoding = threading.BoundedSemaphore(DECODING)
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
                with self._decoding:
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
        layers = [{"index": t.index, "name": t.name, "type": type(t.layer).__name__,
                   "explainable": explainable(t.layer), **_encode(t.output)}
                  for t in trace if _shown(t.layer, t.output.shape)]
        return {"top": [{"label": self.class_names[c], "index": int(c),
                         "probability": float(probs[c])} for c in order],
                "input": _encode(x), "layers": layers}

    def explain(self, body: bytes, layer: int, row: int, col: int,
                channel: int) -> dict[str, Any]:
        """How the output of layer number ``layer`` (in :func:`layer_outputs`' numbering) at
        ``(row, col, channel)`` was made for the image in ``body``
        (:func:`cnnumpy.serve.explain.explain`)."""
        count = len(getattr(self.model, "_nodes", self.model.layers))
        if not 0 <= layer < count:
            raise BadInput(f"layer {layer} does not exist: the model has layers 0 to "
                           f"{count - 1}")
        x = self.image(body)
        with self._lock:
            trace = layer_outputs(self.model, x)
        try:
            return explain(trace[layer], row, col, channel)
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def model_info(self) -> dict[str, Any]:
        """The model's summary: each layer's (each node's, in a graph) name, type, output
        shape, parameter count and the layers it reads (:func:`_rows`), the totals, the first
        convolution's kernels (:func:`cnnumpy.feature_maps.kernel_tiles`) and the text of
        ``model.summary()``."""
        model = self.model
        rows = _rows(model)
        convs = [layer for layer in model.layers if is_convolution(layer)]
        kernels = None
        if convs:
            kernels = {"layer": convs[0].name, **_encode(kernel_tiles(convs[0]))}
        return {"name": model.name, "input_shape": list(model.input_shape),
                "class_names": self.class_names, "image_settings": self.settings,
                "layers": rows, "total_params": model.count_params(),
                "first_kernels": kernels, "summary": model.summary(print_fn=None)}
