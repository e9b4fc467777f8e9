"""``cnnumpy visualize`` on a graph model's file: first-layer filters and every
convolution's feature maps."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import cnnumpy
from cnnumpy import cli, models

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")


def test_visualize_draws_a_saved_resnets_every_convolution(tmp_path, monkeypatch):
    from cnnumpy import plot

    (x, y), _ = cnnumpy.datasets.load_mnist_sample()
    model = models.resnet(depth=8, width=4, input_shape=(28, 28, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(x[:16], y[:16])  # one step: weights and statistics moved
    path = tmp_path / "resnet8.safetensors"
    model.save(str(path))
    image = tmp_path / "digit.png"
    PIL.fromarray(np.round(255 * (1 - x[0, :, :, 0])).astype(np.uint8)).save(image)
    titles = []
    save = plot._save

    def keep_titles(fig, out):
        titles.extend(ax.get_title(loc="left") or ax.get_title() for ax in fig.axes
                      if ax.get_title(loc="left") or ax.get_title())
        save(fig, out)

    monkeypatch.setattr(plot, "_save", keep_titles)
    out = tmp_path / "maps.png"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["visualize", str(path), str(image), "--out", str(out)]) == 0
    assert f"Saved filters and feature maps to {out}" in printed.getvalue()
    convs = [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 9  # the stem, two per block, two projections
    assert titles == ["input", "filters of conv1", *convs]
    with PIL.open(out) as picture:
        assert picture.format == "PNG" and picture.height == round(1.3 * 11 * 100)
        pixels = np.asarray(picture.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not blank
