"""MNIST-style downloads against a real HTTP server on 127.0.0.1 (never the real network).

The server hands out the real digits bundled with the package (``cnnumpy/datasets/data``, the
files of ``load_mnist_sample``); the tests substitute those files' SHA-256 sums for the pinned
ones.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import cnnumpy.datasets
from cnnumpy.datasets import (
    CHECKSUMS,
    FILES,
    MIRRORS,
    DatasetError,
    default_data_dir,
    fetch_file,
    load_fashion_mnist,
    load_mnist,
    load_mnist_sample,
)

SOURCE = Path(cnnumpy.datasets.__file__).resolve().parent / "data"  # the bundled digits
LABELS = "train-labels-idx1-ubyte.gz"


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No proxy, and default mirrors that lead nowhere, so nothing can reach the internet."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for name in MIRRORS:
        monkeypatch.setitem(MIRRORS, name, (closed_port_url(),))


@pytest.fixture(scope="module")
def files():
    return {f: (SOURCE / f).read_bytes() for f in FILES}


@pytest.fixture
def sums(files, monkeypatch):
    table = {f: hashlib.sha256(data).hexdigest() for f, data in files.items()}
    monkeypatch.setitem(CHECKSUMS, "mnist", table)
    monkeypatch.setitem(CHECKSUMS, "fashion-mnist", table)
    return table


class Server:
    """Serves ``routes[path] = (kind, body)``; kind "ok", "drop" (half, then close) or "stall"."""

    def __init__(self):
        self.routes, self.requests, self.release = {}, [], threading.Event()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                state.requests.append(self.path)
                if self.path not in state.routes:
                    self.send_error(404)
                    return
                kind, body = state.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "ok":
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if kind == "stall":
                    state.release.wait(10)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def mirror(self, name: str, data: dict, kind: str = "ok") -> str:
        for filename, body in data.items():
            self.routes[f"/{name}/{filename}"] = (kind, body)
        return f"{self.base}/{name}/"


@pytest.fixture
def server():
    srv = Server()
    srv.thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(5)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.part"))


def test_download_then_load(tmp_path, server, files, sums):
    mirror = server.mirror("a", files)
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / (LABELS + ".part")).write_bytes(b"stale leftovers of a killed run")
    (x_train, y_train), (x_test, y_test) = load_mnist(folder, download=True, mirrors=[mirror])
    assert sorted(server.requests) == sorted(f"/a/{f}" for f in FILES)
    assert leftovers(folder) == []
    for f in FILES:
        assert hashlib.sha256((folder / f).read_bytes()).hexdigest() == sums[f]
    (sx, sy), (tx, ty) = load_mnist_sample()  # the bundled copy of the same digits
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    np.testing.assert_array_equal(x_train, sx)
    np.testing.assert_array_equal(y_test, ty)


def test_verified_files_are_not_downloaded_again(tmp_path, server, files, sums):
    mirror = server.mirror("a", files)
    (tmp_path / FILES[0]).write_bytes(files[FILES[0]])
    load_mnist(tmp_path, download=True, mirrors=[mirror])
    assert sorted(server.requests) == sorted(f"/a/{f}" for f in FILES[1:])
    load_mnist(tmp_path, download=True, mirrors=[mirror])
    assert len(server.requests) == 3


@pytest.mark.parametrize("failure", ["404", "refused"])
def test_next_mirror_after_a_failure(tmp_path, server, files, sums, failure):
    first = f"{server.base}/empty/" if failure == "404" else closed_port_url()
    good = server.mirror("b", files)
    (x_train, _), _ = load_mnist(tmp_path, download=True, mirrors=[first, good])
    assert len(x_train) == 8000 and leftovers(tmp_path) == []
    assert sorted(p for p in server.requests if p.startswith("/b/")) == \
        sorted(f"/b/{f}" for f in FILES)
    if failure == "404":
        assert f"/empty/{FILES[0]}" in server.requests


def assert_nothing_left(folder: Path, filename: str):
    assert not (folder / filename).exists()
    assert leftovers(folder) == []


def test_corrupt_file_is_refused(tmp_path, server, files, sums):
    bad = bytearray(files[LABELS])
    bad[len(bad) // 2] ^= 0xFF
    mirror = server.mirror("a", {**files, LABELS: bytes(bad)})
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path, download=True, mirrors=[mirror])
    message = str(info.value)
    assert mirror + LABELS in message and "checksum mismatch" in message
    assert sums[LABELS] in message and hashlib.sha256(bad).hexdigest() in message
    assert_nothing_left(tmp_path, LABELS)
    assert (tmp_path / FILES[0]).is_file()  # the good file fetched before stays


def test_every_mirror_named_when_all_fail(tmp_path, server, files, sums):
    bad = files[LABELS][:-10] + b"0123456789"
    first, second = closed_port_url(), server.mirror("c", {LABELS: bad})
    with pytest.raises(DatasetError) as info:
        fetch_file(LABELS, str(tmp_path), sums[LABELS], [first, second])
    message = str(info.value)
    assert first + LABELS in message and second + LABELS in message
    assert sums[LABELS] in message and hashlib.sha256(bad).hexdigest() in message
    assert_nothing_left(tmp_path, LABELS)


def test_dropped_connection_leaves_nothing(tmp_path, server, files, sums):
    name = FILES[0]
    mirror = server.mirror("a", {name: files[name]}, kind="drop")
    with pytest.raises(DatasetError, match="connection dropped after") as info:
        fetch_file(name, str(tmp_path), sums[name], mirror)
    assert mirror + name in str(info.value)
    assert_nothing_left(tmp_path, name)


def test_stalled_mirror_times_out_and_the_next_one_serves(tmp_path, server, files, sums):
    stalled = server.mirror("slow", {LABELS: files[LABELS]}, kind="stall")
    good = server.mirror("a", {LABELS: files[LABELS]})
    start = time.monotonic()
    path = fetch_file(LABELS, str(tmp_path / "new"), sums[LABELS], [stalled, good],
                      timeout=0.5)
    assert time.monotonic() - start < 5
    assert Path(path).read_bytes() == files[LABELS] and leftovers(tmp_path / "new") == []
    assert server.requests == [f"/slow/{LABELS}", f"/a/{LABELS}"]


def test_present_file_with_wrong_sum_is_reported_not_replaced(tmp_path, server, files, sums):
    mirror = server.mirror("a", files)
    for f in FILES[1:]:
        (tmp_path / f).write_bytes(files[f])
    (tmp_path / FILES[0]).write_bytes(b"not mnist")
    with pytest.raises(DatasetError, match="delete it") as info:
        load_mnist(tmp_path, download=True, mirrors=[mirror])
    assert str(tmp_path / FILES[0]) in str(info.value) and sums[FILES[0]] in str(info.value)
    assert (tmp_path / FILES[0]).read_bytes() == b"not mnist" and server.requests == []
    # Without download=True the files on disk are trusted as they are (no sums checked).
    with pytest.raises(DatasetError, match="bad magic"):
        load_mnist(tmp_path)


def test_missing_files_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNUMPY_DATA", str(tmp_path))
    with pytest.raises(DatasetError) as info:
        load_mnist()
    message = str(info.value)
    assert str(tmp_path / "mnist") in message and "download=True" in message
    assert all(f in message for f in FILES)
    assert not (tmp_path / "mnist").exists()


def test_default_folder_and_uncompressed_files(tmp_path, monkeypatch, files):
    monkeypatch.setenv("CNNUMPY_DATA", str(tmp_path))
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for f, data in files.items():
        (folder / f[:-3]).write_bytes(gzip.decompress(data))
    (x_train, y_train), (x_test, _) = load_fashion_mnist()
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    assert y_train.dtype == np.int64
    monkeypatch.delenv("CNNUMPY_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir("mnist") == str(tmp_path / "home" / ".cache" / "cnnumpy" / "mnist")


def test_fashion_mnist_downloads_into_its_own_folder(tmp_path, monkeypatch, server, files,
                                                     sums):
    monkeypatch.setenv("CNNUMPY_DATA", str(tmp_path))
    mirror = server.mirror("fashion", files)
    monkeypatch.setitem(MIRRORS, "fashion-mnist", (mirror,))
    load_fashion_mnist(download=True)
    assert sorted(os.listdir(tmp_path / "fashion-mnist")) == sorted(FILES)


def test_pinned_table_and_default_mirrors():
    assert set(CHECKSUMS) == {"mnist", "fashion-mnist"}
    for table in CHECKSUMS.values():
        assert set(table) == set(FILES)
        assert all(re.fullmatch("[0-9a-f]{64}", s) for s in table.values())
    assert len({s for t in CHECKSUMS.values() for s in t.values()}) == 8


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="ftp://x"):
        load_mnist(tmp_path, download=True, mirrors=["ftp://x"])
    with pytest.raises(ValueError, match="at least one"):
        fetch_file(LABELS, str(tmp_path), "0" * 64, [])
    with pytest.raises(TypeError, match="download"):
        load_mnist(tmp_path, download="yes")
