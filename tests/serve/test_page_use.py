"""The page of ``cnnumpy serve`` as a learner uses it, in a real headless Chromium: drawing with
a finger and a pen, the keyboard (file picker, drop zone, tiles), a file dropped anywhere, a
phone-sized window, and an explanation that follows the drawing."""

from __future__ import annotations

import base64

import numpy as np
import pytest


@pytest.fixture(scope="module")
def page(running, open_page):
    yield from open_page(running)


def _updates(page) -> int:
    return page.evaluate("() => window.cnnTimings.length")


def _wait_update(page, before: int) -> None:
    page.wait_for_function("(n) => window.cnnTimings.length > n", arg=before, timeout=10_000)


SEVEN = [(0.25, 0.2), (0.5, 0.2), (0.75, 0.2), (0.65, 0.4), (0.55, 0.6), (0.5, 0.8)]


@pytest.mark.parametrize("kind", ["touch", "pen"])
def test_a_finger_or_a_pen_draws(page, kind):
    page.locator("#clear").click()
    page.evaluate("""() => { if (!window.seenPointers) document.getElementById("pad")
        .addEventListener("pointerdown", (e) => window.seenPointers.push(e.pointerType));
        window.seenPointers = []; }""")
    box = page.locator("#pad").bounding_box()
    points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in SEVEN]
    cdp = page.context.new_cdp_session(page)
    before = _updates(page)
    if kind == "touch":
        cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
        for i, (x, y) in enumerate(points):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart" if i == 0 else
                                                  "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": False})
    else:
        for i, (x, y) in enumerate(points):
            cdp.send("Input.dispatchMouseEvent", {
                "type": "mousePressed" if i == 0 else "mouseMoved", "x": x, "y": y,
                "button": "left", "buttons": 1, "clickCount": 1, "pointerType": "pen"})
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": points[-1][0],
                                              "y": points[-1][1], "button": "left",
                                              "clickCount": 1, "pointerType": "pen"})
    cdp.detach()
    _wait_update(page, before)
    assert page.evaluate("() => window.seenPointers") == [kind]
    assert page.locator("#top .bar-row.first .label").inner_text() == "7"
    assert page.errors == []


def test_the_keyboard_reaches_the_file_picker_the_drop_zone_and_the_tiles(page, tmp_path,
                                                                          png):
    import cnnumpy

    _, (x, y) = cnnumpy.datasets.load_mnist_sample()
    path = tmp_path / "digit.png"
    path.write_bytes(png(1 - x[3, :, :, 0]))
    page.locator("#clear").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "file"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "drop"
    before = _updates(page)
    choosers = []

    def take(chooser) -> None:
        choosers.append(chooser)

    page.on("filechooser", take)  # intercepts the dialog from now on:
    page.evaluate("() => 0")  # a round trip makes sure, before Enter is pressed
    page.keyboard.press("Enter")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(100)
    page.remove_listener("filechooser", take)
    assert len(choosers) == 1, "Enter on the drop zone opened no file chooser"
    choosers[0].set_files(str(path))
    _wait_update(page, before)
    assert page.locator("#top .bar-row.first .label").inner_text() == str(y[3])
    page.keyboard.press("Tab")  # on to the first feature map's first tile
    tile = page.locator("#maps .layer[data-layer='0'] canvas.tile").first
    assert tile.evaluate("(t) => t === document.activeElement")
    page.keyboard.press("Enter")
    page.wait_for_selector("#explain h3:has-text('filter 0 at row 14, column 14')")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#explain h3:has-text('filter 0 at row 14, column 15')")
    page.keyboard.press("ArrowUp")
    page.wait_for_selector("#explain h3:has-text('filter 0 at row 13, column 15')")
    assert page.locator("#maps canvas.tile.selected").count() == 1
    assert page.errors == []


def test_a_file_dropped_anywhere_on_the_page_is_used(page, png):
    import cnnumpy

    _, (x, y) = cnnumpy.datasets.load_mnist_sample()
    data = base64.b64encode(png(1 - x[4, :, :, 0])).decode()
    before = _updates(page)
    page.evaluate("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "digit.png", { type: "image/png" }));
        document.getElementById("pad").dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", data)
    _wait_update(page, before)
    assert page.locator("#top .bar-row.first .label").inner_text() == str(y[4])


def test_the_explanation_follows_a_new_drawing(page, running):
    page.locator("#clear").click()
    box = page.locator("#pad").bounding_box()
    for stroke in (SEVEN[:3], SEVEN[2:]):  # a bar, then the 7's leg
        before = _updates(page)
        page.mouse.move(box["x"] + stroke[0][0] * box["width"],
                        box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for fx, fy in stroke[1:]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=4)
        page.mouse.up()
        _wait_update(page, before)
        if stroke[0] == SEVEN[0]:
            tile = page.locator("#maps .layer[data-layer='0'] canvas.tile").nth(1)
            tile.click(position={"x": 0.55 * tile.bounding_box()["width"],
                                 "y": 0.5 * tile.bounding_box()["height"]})
            page.wait_for_selector("#explain .formula")
            first = page.locator("#explain").get_attribute("data-image")
    page.wait_for_function("(first) => document.getElementById('explain').dataset.image "
                           "!== first", arg=first, timeout=10_000)
    heading = page.locator("#explain h3").inner_text()
    row, col = (int(v) for v in heading.split("at row ")[1].split(", column "))
    png = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
    body = base64.b64decode(png.split(",", 1)[1])
    status, answer = running.json(
        "POST", f"/api/explain?layer=0&row={row}&col={col}&channel=1", body)
    assert status == 200
    shown = float(page.locator("#explain").get_attribute("data-model-value"))
    assert shown == pytest.approx(answer["model_value"], abs=1e-6)
    assert page.locator("#maps canvas.tile.selected").count() == 1


def test_a_phone_sized_window_needs_no_sideways_scrolling(page):
    page.set_viewport_size({"width": 375, "height": 740})
    try:
        page.wait_for_function("() => window.innerWidth === 375")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        pad = page.locator("#pad").bounding_box()
        assert pad["x"] >= 0 and pad["x"] + pad["width"] <= 375
        assert np.isclose(pad["width"], pad["height"], atol=1)  # still square
    finally:
        page.set_viewport_size({"width": 1200, "height": 1000})
