"""The page of ``cnnumpy serve`` in a real headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``: no step downloads a browser).

With ``CNNUMPY_UPDATE_SCREENSHOT=1`` the test also writes the README's screenshot,
``docs/images/serve.png``. The time from a stroke's end to the updated maps is printed (run
with ``-s`` to see it).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page(running, open_page):
    yield from open_page(running)


def draw_seven(page) -> None:
    box = page.locator("#pad").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.25 * w, y + 0.2 * h)
    page.mouse.down()
    for fx, fy in [(0.5, 0.2), (0.75, 0.2), (0.6, 0.5), (0.5, 0.8)]:
        page.mouse.move(x + fx * w, y + fy * h, steps=6)
    page.mouse.up()


def test_drawing_shows_the_top_class_and_the_feature_maps(page, running):
    for strokes in (1, 2):  # the second stroke is timed with the server warmed up
        draw_seven(page)
        page.wait_for_function("(n) => window.cnnTimings.length >= n", arg=strokes)
    assert page.locator("#top .bar-row").count() == 10
    assert page.locator("#top .bar-row.first .label").inner_text() == "7"
    assert page.locator("#maps .layer").count() == 4  # two convolutions, two poolings
    assert page.locator("#maps .layer[data-layer='0'] canvas.tile").count() == 6
    assert page.locator("#maps .layer[data-layer='2'] canvas.tile").count() == 16
    assert page.locator("#kernels canvas.tile").count() == 6
    for which, t in zip(("first", "second"), page.evaluate("window.cnnTimings"), strict=True):
        print(f"\n{which} stroke's end to updated maps: {t['since_stroke_ms']:.0f} ms (debounce "
              f"120 ms, request {t['request_ms']:.0f} ms, drawing {t['render_ms']:.0f} ms)")
    assert t["since_stroke_ms"] < 1000  # "within a fraction of a second"
    # the maps' tiles are not blank: the first convolution's pixels vary
    pixels = page.evaluate("""() => { const c = document.querySelector(
        "#maps .layer[data-layer='0'] canvas.tile");
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    assert np.std(np.array(pixels).reshape(-1, 4)[:, 0]) > 5
    assert page.errors == []


def test_clicking_a_tile_explains_its_value(page):
    if page.locator("#maps canvas.tile").count() == 0:
        draw_seven(page)
        page.wait_for_selector("#maps canvas.tile")
    tile = page.locator("#maps .layer[data-layer='0'] canvas.tile").nth(1)
    box = tile.bounding_box()
    tile.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.4})
    page.wait_for_selector("#explain .formula")
    assert page.locator("#explain table.grid").count() == 3  # window, kernel, products
    assert "sum of products" in page.locator("#explain .formula").inner_text()
    value = float(page.locator("#explain").get_attribute("data-value"))
    model_value = float(page.locator("#explain").get_attribute("data-model-value"))
    assert value == pytest.approx(model_value, abs=1e-5)
    pool = page.locator("#maps .layer[data-layer='1'] canvas.tile").first
    pool.click()
    page.wait_for_selector("#explain .formula:has-text('largest value')")
    assert page.locator("#explain td.win").count() == 1


def _file(page, pixels: np.ndarray, fmt: str, mime: str) -> None:
    """Drop an image file on the drop zone, as a person dragging it from their files."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, fmt)
    data = base64.b64encode(buffer.getvalue()).decode()
    page.evaluate("""([data, mime, name]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: mime }));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [data, mime, f"digit.{fmt.lower()}"])


@pytest.mark.parametrize(("fmt", "mime", "index"), [("PNG", "image/png", 0),
                                                      ("JPEG", "image/jpeg", 1)])
def test_dropping_a_png_and_a_jpeg(page, running, fmt, mime, index):
    import cnnumpy

    _, (x, y) = cnnumpy.datasets.load_mnist_sample()
    n = len(page.evaluate("window.cnnTimings"))
    image = np.repeat(1 - x[index], 3, axis=2)  # dark ink on paper, in colour
    _file(page, np.kron(image, np.ones((3, 3, 1))), fmt, mime)  # 84 x 84 pixels
    page.wait_for_function("(n) => window.cnnTimings.length > n", arg=n)
    label = page.locator("#top .bar-row.first .label").inner_text()
    body = io.BytesIO()
    from PIL import Image

    Image.fromarray((np.kron(image, np.ones((3, 3, 1))) * 255).astype(np.uint8)).save(body, fmt)
    status, answer = running.json("POST", "/api/predict", body.getvalue(), mime)
    assert label == answer["top"][0]["label"] == str(y[index])
    assert page.errors == []


def test_a_screenshot_is_not_blank(page, tmp_path):
    from PIL import Image

    page.locator("#clear").click()
    draw_seven(page)
    page.wait_for_selector("#maps canvas.tile")
    page.locator("#maps .layer[data-layer='0'] canvas.tile").nth(2).click()
    page.wait_for_selector("#explain .formula:has-text('sum of products')")
    shot = page.screenshot(full_page=True)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and pixels.shape[0] > 500
    if os.environ.get("CNNUMPY_UPDATE_SCREENSHOT") == "1":
        out = ROOT / "docs" / "images" / "serve.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(shot)
