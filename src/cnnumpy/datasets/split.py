"""The fixed test split of an image folder: stratified, and the same on every run."""

from __future__ import annotations

import hashlib
import os

import numpy as np

TEST_SHARE = 6
"""The test split holds ``n // TEST_SHARE`` of each class's ``n`` images (a sixth)."""


def in_test_split(paths: list[str], labels: np.ndarray) -> np.ndarray:
    """Which images form an image folder's fixed test split.

    In each class of ``n`` images, the ``n // TEST_SHARE`` (a sixth, rounded down) whose
    relative paths have the smallest SHA-1 hashes: stratified, independent of any seed, of
    the order the files are listed in and of the machine; adding or removing one image moves
    at most one other between the parts.

    Args:
        paths: each image's path relative to the folder (``class/name.png``), with ``/`` or
            the system's separator.
        labels: each image's class index.

    Returns:
        A boolean mask, True for the test images.

    Shape:
        ``paths``, ``labels`` and the result: (N,).
    """
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"in_test_split: {len(paths)} paths but {len(labels)} labels")
    hashes = path_hashes(paths)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # a loop over classes, not images
        members = np.flatnonzero(labels == c)
        ranked = members[np.argsort(hashes[members], kind="stable")]
        mask[ranked[: len(members) // TEST_SHARE]] = True
    return mask


def path_hashes(paths: list[str]) -> np.ndarray:
    """The SHA-1 of each path written with ``/``, as hex strings (which sort like the hashes).

    Shape:
        ``paths`` and the result: (N,).
    """
    return np.array([hashlib.sha1(p.replace(os.sep, "/").encode()).hexdigest() for p in paths],
                    dtype="U40")
