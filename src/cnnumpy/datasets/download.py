"""Fetching dataset files over HTTP(S), verified against pinned SHA-256 sums.

A file is streamed to ``<file>.part`` and hashed while it arrives. Only when every byte
announced by the server has come and the sum matches the pinned one is it renamed into
place with ``os.replace``. Any failure removes the ``.part`` file, so the final path holds
either a verified file or nothing. Mirrors are tried in order until one succeeds.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException

from cnnumpy.datasets.idx import DatasetError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
"""The four standard file names of MNIST and Fashion-MNIST, in that order."""

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}
"""Default base URLs per dataset, tried in order."""

CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        TRAIN_IMAGES: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        TRAIN_LABELS: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        TEST_IMAGES: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        TEST_LABELS: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        TRAIN_IMAGES: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        TRAIN_LABELS: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        TEST_IMAGES: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        TEST_LABELS: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
"""Pinned SHA-256 sums of the published ``.gz`` files, per dataset (read at call time)."""

TIMEOUT = 30.0
"""Seconds any single connect or read may block before the mirror counts as failed."""

DEADLINE = 600.0
"""Seconds one file may take from one mirror in all before the mirror counts as failed."""

MAX_BYTES = 256 * 2**20
"""Largest file accepted from a mirror (the biggest real one is about 26 MB)."""

_CHUNK = 1 << 16


def default_data_dir(name: str) -> str:
    """Return the folder where dataset ``name`` is kept by default.

    ``$CNNUMPY_DATA/<name>`` when the environment variable is set and not empty, else
    ``~/.cache/cnnumpy/<name>``.
    """
    base = os.environ.get("CNNUMPY_DATA") or os.path.join("~", ".cache", "cnnumpy")
    return os.path.join(os.path.expanduser(base), name)


def sha256_of(path: str) -> str:
    """Return the hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_mirrors(mirrors: str | Sequence[str], where: str) -> tuple[str, ...]:
    """Return ``mirrors`` as a tuple of http(s) base URLs, or raise ValueError naming ``where``."""
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    mirrors = tuple(mirrors)
    if not mirrors:
        raise ValueError(f"{where}: mirrors must list at least one URL, received mirrors=()")
    for url in mirrors:
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"{where}: each mirror must be an http:// or https:// URL, "
                             f"received {url!r}")
    return mirrors


def fetch_file(filename: str, folder: str, sha256: str, mirrors: str | Sequence[str],
               timeout: float = TIMEOUT) -> str:
    """Download ``filename`` into ``folder`` from the first mirror that delivers it intact.

    The URL tried is each mirror's base URL followed by ``filename``. The bytes go to
    ``<folder>/<filename>.part`` and are hashed on the way; after a complete, matching
    download the part file is renamed to ``<folder>/<filename>``.

    Args:
        filename: file name on the mirror and on disk.
        folder: destination folder (created if needed).
        sha256: the expected hex SHA-256 of the file.
        mirrors: base URLs, tried in order; the next is tried after any failure.
        timeout: seconds any single connect or read may block.

    Returns:
        The path of the verified file.

    Raises:
        DatasetError: every mirror failed; the message names each URL tried and why,
            with both checksums for a mismatch. Nothing is left at the final path.
    """
    mirrors = check_mirrors(mirrors, "fetch_file")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot create the download folder ({exc})") from None
    final = os.path.join(folder, filename)
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            _download(url, final + ".part", sha256.lower(), timeout)
        except _Failure as exc:
            failures.append(f"{url}: {exc}")
            continue
        try:
            os.replace(final + ".part", final)
        except OSError as exc:
            _remove(final + ".part")
            raise DatasetError(f"{final}: could not move the verified download into place "
                               f"({exc})") from None
        return final
    raise DatasetError(f"could not download {filename} into {folder}: " + "; ".join(failures))


class _Failure(Exception):
    """One mirror failed to deliver the file (the part file is already removed)."""


def _download(url: str, part: str, expected: str, timeout: float) -> None:
    """Stream ``url`` into ``part`` and check it; raise ``_Failure`` and remove it if bad."""
    try:
        actual = _stream(url, part, timeout)
    except BaseException as exc:
        _remove(part)
        if isinstance(exc, (OSError, HTTPException, ValueError)):
            raise _Failure(str(exc) or type(exc).__name__) from None
        raise
    if actual != expected:
        _remove(part)
        raise _Failure(f"checksum mismatch: expected sha256 {expected}, received {actual}")


def _stream(url: str, part: str, timeout: float) -> str:
    """Write the body of ``url`` to ``part``; return its hex SHA-256."""
    request = urllib.request.Request(url, headers={"User-Agent": "cnnumpy"})
    start = time.monotonic()
    digest, received = hashlib.sha256(), 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.isdigit() else None
        if announced is not None and announced > MAX_BYTES:
            raise ValueError(f"announces {announced} bytes, more than the limit of {MAX_BYTES}")
        with open(part, "wb") as f:
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > MAX_BYTES:
                    raise ValueError(f"sent more than the limit of {MAX_BYTES} bytes")
                if time.monotonic() - start > DEADLINE:
                    raise TimeoutError(f"took longer than {DEADLINE:g} s")
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    if announced is not None and received != announced:
        raise ConnectionError(f"connection dropped after {received} of {announced} bytes")
    return digest.hexdigest()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
