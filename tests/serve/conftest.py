"""A ``cnnumpy serve`` server on a free port, for the tests of this folder, and images."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import threading
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("PIL", reason="cnnumpy serve reads images with Pillow")


class Running:
    """A server serving on a background thread, and requests to it."""

    def __init__(self, **kwargs) -> None:
        from cnnumpy import serve

        self.server = serve.make_server(port=0, **kwargs)
        self.port = self.server.server_address[1]
        self.url = self.server.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """One request on its own connection: status, headers, body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "image/png") -> tuple[int, dict]:
        headers = {"Content-Type": content_type} if body is not None else {}
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def running():
    server = Running()
    yield server
    server.close()


def small_graph_model():
    """A graph on 12x12 grey images: a convolution and max pooling, a residual block whose
    two convolutions are one shared layer, a depthwise convolution, average pooling, a
    concatenation with a 1x1 projection, global pooling and a dense vote over 3 classes."""
    import cnnumpy
    from cnnumpy import layers as L

    x = inputs = cnnumpy.Input((12, 12, 1), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    x = L.MaxPool2D(2, name="pool")(x)
    shared = L.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    x = L.Add(name="add")([x, shared(shared(x))])
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu",
                          name="depthwise")(x)
    x = L.AvgPool2D(2, name="avgpool")(x)
    x = L.Concatenate(name="concat")([x, L.Conv2D(2, 1, name="proj")(x)])
    x = L.GlobalAvgPool2D(name="gap")(x)
    model = cnnumpy.Model(inputs, L.Dense(3, activation="softmax", name="fc")(x), name="small")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # biases away from zero, so that they show in the sums
        for value in layer.params.values():
            value[...] += rng.uniform(-0.2, 0.2, value.shape).astype(value.dtype)
    return model


@pytest.fixture(scope="session")
def graph_running():
    """A server for :func:`small_graph_model`, and that model."""
    model = small_graph_model()
    server = Running(model=model)
    server.model = model
    yield server
    server.close()


@pytest.fixture(scope="session")
def digits():
    """Five bundled test digits and their labels."""
    import cnnumpy

    _, (x, y) = cnnumpy.datasets.load_mnist_sample()
    return x[:5], y[:5]


@pytest.fixture(scope="session")
def png():
    """``png(pixels, fmt="PNG")``: :func:`image_file`."""
    return image_file


def image_file(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """An image file's bytes from float pixels in [0, 1], ``(H, W)`` or ``(H, W, 3)``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.asarray(pixels) * 255).astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


def _need(ok: bool, what: str) -> None:
    """In CI the browser tests must run: a missing piece fails there, and skips elsewhere."""
    if not ok:
        message = f"{what} (apt-get install chromium; pip install playwright)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message + ", not CI")


def _open_page(running: Running):
    """A generator for a module fixture: a headless Chromium tab on ``running``'s page,
    loaded with its summary shown; after the tests, no request may have gone to another
    host. The tab's ``errors`` list the page's errors and console errors."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _need(sync_playwright is not None, "Playwright for Python is not installed")
    _need(os.path.exists(CHROMIUM) or shutil.which("chromium") is not None,
          "Debian's chromium is not installed")
    origin = urlsplit(running.url)
    foreign: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1200, "height": 1000})

        def guard(route):  # any request to another host fails the test
            url = urlsplit(route.request.url)
            if (url.scheme, url.netloc) != (origin.scheme, origin.netloc):
                foreign.append(route.request.url)
                return route.abort()
            return route.continue_()

        context.route("**/*", guard)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(running.url)
        tab.wait_for_selector("#summary:has-text('Total params')")
        tab.foreign, tab.errors = foreign, errors
        yield tab
        browser.close()
    assert foreign == [], f"the page asked other hosts: {foreign}"


@pytest.fixture(scope="session")
def open_page():
    """``yield from open_page(running)`` in a module fixture: :func:`_open_page`."""
    return _open_page
