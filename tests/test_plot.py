"""Pictures of a model: the training curves' epoch axis."""

from __future__ import annotations

import pytest

from cnnumpy import plot

pytest.importorskip("matplotlib")


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 40])
def test_training_curves_label_whole_epochs_only(monkeypatch, epochs):
    figures = []
    monkeypatch.setattr(plot, "_save", lambda fig, path: figures.append(fig))
    plot.plot_history({"loss": [1.0 / e for e in range(1, epochs + 1)],
                       "val_loss": [1.2 / e for e in range(1, epochs + 1)],
                       "accuracy": [0.5] * epochs}, "curves.png")
    (figure,) = figures
    figure.canvas.draw()
    for ax in figure.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= min(2, epochs) and all(t == int(t) for t in ticks), ticks
    plot._pyplot().close(figure)


def _titles(monkeypatch, model, image) -> tuple[list[str], list[int]]:
    """The row titles of ``plot_feature_maps``'s figure and the number of tiles per row."""
    figures = []
    monkeypatch.setattr(plot, "_save", lambda fig, path: figures.append(fig))
    plot.plot_feature_maps(model, image, "maps.png")
    (figure,) = figures
    rows = figure.axes[0].get_gridspec().nrows
    cols = len(figure.axes) // rows
    grid = [figure.axes[r * cols:(r + 1) * cols] for r in range(rows)]
    titles = [row[0].get_title(loc="left") or row[0].get_title() for row in grid]
    tiles = [sum(1 for ax in row if ax.images) for row in grid]
    plot._pyplot().close(figure)
    return titles, tiles


def test_feature_maps_of_a_graph_model_are_titled_by_layer_and_call(monkeypatch):
    import numpy as np

    import cnnumpy
    from cnnumpy import layers as L

    x = inputs = cnnumpy.Input((8, 8, 2))
    x = L.Conv2D(3, 3, padding="same", activation="relu", name="stem")(x)
    shared = L.Conv2D(3, 3, padding="same", name="shared")
    x = L.Add(name="add")([x, shared(shared(x))])
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = L.Conv2DTranspose(4, 2, strides=2, name="up")(x)
    model = cnnumpy.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    image = np.random.default_rng(0).uniform(0, 1, (8, 8, 2)).astype(np.float32)
    titles, tiles = _titles(monkeypatch, model, image)
    assert titles == ["input", "filters of stem", "stem", "shared", "shared[1]", "depthwise",
                      "up"]
    assert tiles == [1, 3, 3, 3, 3, 6, 4]


def test_feature_maps_of_a_model_without_convolutions_are_refused():
    import numpy as np

    import cnnumpy
    from cnnumpy import layers as L

    model = cnnumpy.Sequential([L.Flatten(input_shape=(4, 4, 1)), L.Dense(2)])
    with pytest.raises(ValueError, match="has no convolution layer"):
        plot.plot_feature_maps(model, np.zeros((4, 4, 1), np.float32), "maps.png")
