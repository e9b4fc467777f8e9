"""Pictures of a model: training curves, a confusion matrix, filters and feature maps.

Needs matplotlib (``pip install "cnnumpy[plot]"``); it is imported only when a plot is drawn,
with the non-interactive Agg backend, so plots work on machines without a screen.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnumpy.files import atomic_write


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "cnnumpy[plot]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> None:
    """Render to PNG in memory, then write atomically: never a half-written picture."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write(os.fspath(path), buffer.getvalue())


def plot_history(history: dict[str, list[float]], path: str) -> None:
    """Loss and each metric per epoch, training and validation, side by side; the epoch
    axis has whole-number ticks only."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], "o-", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # never epoch 1.25
        if len(epochs) == 1:
            ax.set_xticks(epochs)  # the locator falls back to 0.96, 0.98... around one point
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]`` for integer labels.

    Shape:
        y_true, y_pred: (N,); result: (num_classes, num_classes).
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def plot_confusion_matrix(cm: np.ndarray, class_names: list[str], path: str) -> None:
    """The confusion matrix as a heat map with the counts written in each cell."""
    plt = _pyplot()
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * n, 1 + 0.6 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > threshold else "black")
    fig.tight_layout()
    _save(fig, path)


def plot_feature_maps(model: Any, image: np.ndarray, path: str, max_maps: int = 16) -> None:
    """The first convolution's filters, then up to ``max_maps`` feature maps of every
    convolution (every call of one, in a graph model), each row titled by the layer's name,
    for one image.

    Shape:
        image: (H, W, C) matching the model's input.
    """
    from cnnumpy.feature_maps import is_convolution, kernel_tiles, layer_outputs

    if not any(is_convolution(layer) for layer in model.layers):
        raise ValueError("plot_feature_maps: the model has no convolution layer (Conv2D, "
                         "DepthwiseConv2D, SeparableConv2D or Conv2DTranspose)")
    convs = [t for t in layer_outputs(model, image) if is_convolution(t.layer)]
    kernels = kernel_tiles(convs[0].layer)
    rows = [("filters of " + convs[0].name,
             [kernels[:, :, f] for f in range(min(kernels.shape[2], max_maps))])]
    rows += [(t.name, [t.output[:, :, c] for c in range(min(t.output.shape[2], max_maps))])
             for t in convs]
    cols = max(len(r[1]) for r in rows)
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows) + 1, cols, figsize=(1.2 * cols, 1.3 * (len(rows) + 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    shown = image if image.shape[-1] == 3 else image.mean(axis=-1)  # 1, 2, 4... channels
    axes[0][0].imshow(shown, cmap="gray")
    axes[0][0].set_title("input", fontsize=8)
    axes[0][0].axis("on")  # a frame, so that white parts of the image stay visible
    axes[0][0].set_xticks([])
    axes[0][0].set_yticks([])
    for r, (title, panels) in enumerate(rows, start=1):
        for c, panel in enumerate(panels):
            axes[r][c].imshow(panel, cmap="gray" if r == 1 else "viridis")
        axes[r][0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    _save(fig, path)

