"""MNIST and Fashion-MNIST from a folder of the four standard IDX files, fetched if asked."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cnnumpy.datasets.download import (
    CHECKSUMS,
    FILES,
    MIRRORS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    check_mirrors,
    default_data_dir,
    fetch_file,
    sha256_of,
)
from cnnumpy.datasets.idx import DatasetError, load_idx

Split = tuple[np.ndarray, np.ndarray]


def load_mnist(path: str | os.PathLike | None = None, download: bool = False,
               mirrors: Sequence[str] | None = None) -> tuple[Split, Split]:
    """Load the 70,000 MNIST handwritten digits (60,000 train, 10,000 test).

    Args:
        path: folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
            ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (each may also
            be uncompressed, without ``.gz``). Default: :func:`default_data_dir` ``("mnist")``.
        download: fetch missing files from ``mirrors`` and check every ``.gz`` file against
            the pinned SHA-256 sums in ``CHECKSUMS["mnist"]``.
        mirrors: base URLs tried in order; default ``MIRRORS["mnist"]``.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, images float32 in [0, 1], labels int64.

    Shape:
        ``x_train``: (60000, 28, 28, 1); ``y_train``: (60000,); ``x_test``: (10000, 28, 28, 1).

    Raises:
        DatasetError: a file is missing (without ``download``), fails its checksum, cannot
            be downloaded, or is not a valid IDX file.
    """
    return _load_standard("mnist", "load_mnist", path, download, mirrors)


def load_fashion_mnist(path: str | os.PathLike | None = None, download: bool = False,
                       mirrors: Sequence[str] | None = None) -> tuple[Split, Split]:
    """Load Fashion-MNIST: 70,000 clothing images in 10 classes (60,000 train, 10,000 test).

    Same files, arguments and errors as :func:`load_mnist`, with the dataset name
    ``"fashion-mnist"`` (default folder, ``MIRRORS`` and ``CHECKSUMS`` entries).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, images float32 in [0, 1], labels int64.

    Shape:
        ``x_train``: (60000, 28, 28, 1); ``y_train``: (60000,); ``x_test``: (10000, 28, 28, 1).
    """
    return _load_standard("fashion-mnist", "load_fashion_mnist", path, download, mirrors)


def _load_standard(name: str, where: str, path: str | os.PathLike | None, download: bool,
                   mirrors: Sequence[str] | None) -> tuple[Split, Split]:
    if not isinstance(download, bool):
        raise TypeError(f"{where}: download must be True or False, received {download!r}")
    folder = default_data_dir(name) if path is None else os.path.expanduser(os.fspath(path))
    mirrors = check_mirrors(MIRRORS[name] if mirrors is None else mirrors, where)
    checksums = CHECKSUMS[name]
    found, missing = {}, []
    for filename in FILES:
        packed, raw = os.path.join(folder, filename), os.path.join(folder, filename[:-3])
        if os.path.isfile(packed):
            if download:
                _verify(packed, checksums[filename], where)
            found[filename] = packed
        elif os.path.isfile(raw):
            found[filename] = raw
        elif download:
            found[filename] = fetch_file(filename, folder, checksums[filename], mirrors)
        else:
            missing.append(filename)
    if missing:
        call = f"{where}(download=True)" if path is None else f"{where}({folder!r}, download=True)"
        raise DatasetError(
            f"{name}: {folder} lacks {', '.join(missing)} (gzip or uncompressed); call {call} "
            f"to fetch them from {mirrors[0]}, or copy the files into that folder")
    train = load_idx(found[TRAIN_IMAGES], found[TRAIN_LABELS])
    test = load_idx(found[TEST_IMAGES], found[TEST_LABELS])
    return train, test


def _verify(path: str, expected: str, where: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DatasetError(
            f"{path}: sha256 {actual} differs from the pinned {expected}, so it is not the "
            f"published file; delete it to download it again, or call {where} without "
            "download=True to load it as it is")
