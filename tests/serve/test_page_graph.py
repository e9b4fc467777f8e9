"""The page of ``cnnumpy serve`` serving a graph model (``conftest.small_graph_model``) in a
real headless Chromium: its summary, every conv, pooling and merge node's maps (a shared
layer's two calls apart) and a depthwise convolution's explanation."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def page(graph_running, open_page):
    yield from open_page(graph_running)


def test_a_graph_models_maps_and_explanations_show(page):
    assert "Connected to" in page.locator("#summary").inner_text()
    assert page.locator("#kernels canvas.tile").count() == 4  # the stem's 4 filters
    box = page.locator("#pad").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.3 * w, y + 0.2 * h)
    page.mouse.down()
    page.mouse.move(x + 0.6 * w, y + 0.8 * h, steps=8)
    page.mouse.up()
    page.wait_for_function("() => window.cnnTimings.length >= 1")
    assert page.locator("#top .bar-row").count() == 3
    heads = page.locator("#maps .layer .layer-head strong").all_inner_texts()
    assert heads == ["stem (Conv2D)", "pool (MaxPool2D)", "shared (Conv2D)",
                     "shared[1] (Conv2D)", "add (Add)", "depthwise (DepthwiseConv2D)",
                     "avgpool (AvgPool2D)", "proj (Conv2D)"]
    assert page.locator("#maps .layer[data-layer='4'] canvas.tile").count() == 4
    assert page.locator("#maps .layer[data-layer='6'] canvas.tile").count() == 8
    tile = page.locator("#maps .layer[data-layer='6'] canvas.tile").nth(3)
    tile.click(position={"x": tile.bounding_box()["width"] * 0.5,
                         "y": tile.bounding_box()["height"] * 0.5})
    page.wait_for_selector("#explain .formula:has-text('sum of products')")
    assert "reads input channel 1" in page.locator("#explain").inner_text()
    assert page.locator("#explain table.grid").count() == 3  # window, kernel, products
    value = float(page.locator("#explain").get_attribute("data-value"))
    model_value = float(page.locator("#explain").get_attribute("data-model-value"))
    assert value == pytest.approx(model_value, abs=1e-5)
    shared = page.locator("#maps .layer[data-layer='4'] canvas.tile").first
    shared.click()
    page.wait_for_selector("#explain h3:has-text('shared[1]')")
    assert page.errors == []
