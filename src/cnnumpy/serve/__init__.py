"""``cnnumpy serve``: a local, offline web page where a person draws or drops an image and
watches a CNN classify it, layer by layer.

    from cnnumpy import serve
    server = serve.make_server()            # the shipped digits model, http://127.0.0.1:8000/
    server.serve_forever()

The page and every file it loads ship in the package (``static/``); it makes no request to
any other host. The JSON API is documented in :mod:`cnnumpy.serve.server`. Reading images
needs Pillow (a dependency of cnnumpy).
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from cnnumpy.serve.api import MAX_PIXELS, BadInput, Engine
from cnnumpy.serve.server import MAX_BODY, Server, is_loopback, warn_if_exposed

__all__ = ["DEFAULT_MODEL_ACCURACY", "MAX_BODY", "MAX_PIXELS", "BadInput", "Engine", "Server",
           "default_model_path", "is_loopback", "make_server", "run", "warn_if_exposed"]

DEFAULT_MODEL_ACCURACY = 0.9795
"""The shipped digits model's accuracy on the 2,000 bundled test digits (1,959 right), as
``scripts/train_serve_model.py`` printed when it made the file (retrained when a kernel's
float rounding changes: the script must make the shipped file again to the bit)."""


def default_model_path() -> str:
    """The shipped digits model: a LeNet-like network of 28,886 weights (a 118 KB file),
    trained on the bundled digits by ``scripts/train_serve_model.py``."""
    return str(resources.files("cnnumpy.serve") / "data" / "digits.safetensors")


def make_server(model: Any = None, host: str = "127.0.0.1", port: int = 8000,
                max_body: int = MAX_BODY, max_pixels: int = MAX_PIXELS,
                verbose: bool = False) -> Server:
    """A server for ``model`` (a model, a model file's path, or None for the shipped digits
    model), bound to ``host:port`` and not yet serving: call ``serve_forever()``.

    Raises:
        ImportError: Pillow is not installed.
        ValueError, OSError: the model file cannot be loaded, or the address bound.
    """
    import cnnumpy

    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ImportError('cnnumpy serve reads images with Pillow: pip install '
                          'pillow') from None
    if model is None or isinstance(model, (str, os.PathLike)):
        model = cnnumpy.load_model(os.fspath(model or default_model_path()), compile=False)
    return Server((host, port), Engine(model, max_pixels), max_body, verbose)


def run(model: str | None = None, host: str = "127.0.0.1", port: int = 8000,
        open_browser: bool = False, max_body: int = MAX_BODY, verbose: bool = False) -> None:
    """``cnnumpy serve``: serve ``model`` (a file, or None for the shipped one) until Ctrl+C,
    printing the page's address (with the port chosen when ``port`` is 0)."""
    if model is not None and not os.path.isfile(model):
        raise ValueError(f"{model}: no such model file")
    warn_if_exposed(host)
    with make_server(model, host, port, max_body=max_body, verbose=verbose) as server:
        print(f"Serving {model or 'the shipped digits model'} at {server.url} "
              "(Ctrl+C to stop)", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("Stopped")
