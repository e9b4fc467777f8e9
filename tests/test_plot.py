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
