"""Bad input never stops ``cnnumpy serve``: every error is a JSON ``{"error": ...}`` with a
4xx status, only the page's own files are served, and many requests at once are answered
correctly without the server's memory growing."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cnnumpy import serve


def bomb_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width x height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data \
            + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) \
        + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def raw(running, text: bytes) -> tuple[int, dict]:
    """Send ``text`` as it is (a request line no client library would write); the status and
    the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
        sock.sendall(text)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_bad_bodies_get_a_json_4xx_naming_the_problem(running, png):
    image = png(np.zeros((28, 28)))
    noise = png(np.random.default_rng(0).uniform(size=(64, 64)))  # a truncated one: header kept
    cases = [
        (b"", "image/png", 400, "empty body"),
        (b"hello, not an image", "image/png", 400, "not a PNG, JPEG, BMP or GIF"),
        (noise[: len(noise) // 2], "image/png", 400, "could not be decoded"),
        (bomb_png(30_000, 30_000), "image/png", 413, "decompression bomb"),
        (bomb_png(5_000, 4_000), "image/png", 413, "20,000,000 pixels"),
        (image, "text/plain", 415, "Content-Type 'text/plain' is not accepted"),
        (image, "application/json", 415, "not accepted"),
        (png(np.zeros((8, 8)), "WEBP"), "application/octet-stream", 400, "not a PNG"),
    ]
    for body, kind, status, message in cases:
        got, answer = running.json("POST", "/api/predict", body, kind)
        assert (got, set(answer)) == (status, {"error"}), (message, answer)
        assert message in answer["error"]
    assert running.json("POST", "/api/predict", image, "image/png")[0] == 200  # still serving


def test_bad_requests_get_a_json_4xx(running, png):
    image = png(np.zeros((28, 28)))
    cases = [
        ("GET", "/nowhere", None, 404, "no such page"),
        ("POST", "/api/nowhere", image, 404, "no such route"),
        ("GET", "/api/predict", None, 405, "takes POST"),
        ("POST", "/api/predict?top=0", image, 400, "at least 1"),
        ("POST", "/api/predict?top=x", image, 400, "whole number"),
        ("POST", "/api/predict?colour=1", image, 400, "unknown query parameter"),
        ("POST", "/api/explain?layer=0&row=1", image, 400, "missing channel, col"),
        ("POST", "/api/explain?layer=9&row=0&col=0&channel=0", image, 400, "does not exist"),
        ("POST", "/api/explain?layer=4&row=0&col=0&channel=0", image, 400, "only Conv2D"),
        ("POST", "/api/explain?layer=0&row=28&col=0&channel=0", image, 400, "outside"),
        ("POST", "/api/explain?layer=0&row=0&col=0&channel=6", image, 400, "outside"),
    ]
    for method, path, body, status, message in cases:
        got, answer = running.json(method, path, body)
        assert (got, set(answer)) == (status, {"error"}), (path, answer)
        assert message in answer["error"], (path, answer)
    over = f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n" \
           f"Content-Length: {serve.MAX_BODY + 1}\r\n\r\n".encode()
    assert raw(running, over) == (413, {"error": f"body of {serve.MAX_BODY + 1:,} bytes is "
                                                 f"over the limit of {serve.MAX_BODY:,} bytes"})
    no_length = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert raw(running, no_length)[0] == 411
    chunked = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked" \
              b"\r\n\r\n0\r\n\r\n"
    assert raw(running, chunked)[0] == 411
    assert raw(running, b"GET /a b c HTTP/1.1\r\n\r\n")[0] == 400  # a malformed request line
    assert raw(running, b"BREW / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 405
    status, answer = raw(running, b"GET / HTTP/1.1\r\nHost: attacker.example:80\r\n\r\n")
    assert status == 403 and "loopback" in answer["error"]  # DNS rebinding


@pytest.mark.parametrize("path", [
    "/static/../../io.py", "/static/../__init__.py", "/static/%2e%2e/%2e%2e/io.py",
    "/static/%2e%2e%2fapi.py", "/static/..%2fapi.py", "/static/..%5capi.py",
    "/static/..\\api.py", "/static/..\\..\\io.py", "/static//etc/passwd", "/static/%2fetc/passwd",
    "/static/C:\\Windows\\win.ini", "/static/", "/static/.", "/static/..", "/static/index.html/",
    "/static/app.js%00.html", "/../../../etc/passwd", "/static/./app.js", "/static/APP.JS",
])
def test_nothing_outside_the_static_folder_is_served(running, path):
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, answer = raw(running, request.encode())
    assert status == 404 and set(answer) == {"error"}


def test_the_page_and_its_files_are_served_with_security_headers(running):
    for path, kind in [("/", "text/html"), ("/static/app.js", "javascript"),
                       ("/static/style.css", "text/css"), ("/api/model", "application/json"),
                       ("/nowhere", "application/json")]:
        status, headers, body = running.request("GET", path)
        assert status == (404 if path == "/nowhere" else 200) and kind in headers["Content-Type"]
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "http" not in csp and "*" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
    page = running.request("GET", "/")[2].decode()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert ref.startswith("/static/") and running.request("GET", ref)[0] == 200
    for name in ("app.js", "style.css", "index.html"):  # nothing names another host
        text = running.request("GET", f"/static/{name}")[2].decode()
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), name


def test_200_requests_from_8_threads_are_answered_right_in_bounded_memory(running, png):
    import cnnumpy

    _, (x, y) = cnnumpy.datasets.load_mnist_sample()
    bodies = [png(1 - x[i, :, :, 0]) for i in range(8)]
    expected = [running.json("POST", "/api/predict", b)[1]["top"][0]["label"] for b in bodies]
    assert expected == [str(v) for v in y[:8]]

    def ask(i: int) -> str:
        status, answer = running.json("POST", "/api/predict", bodies[i % 8])
        return answer["top"][0]["label"] if status == 200 else f"status {status}"

    tracemalloc.start()
    try:
        with ThreadPoolExecutor(8) as pool:  # a first round: caches and thread stacks
            list(pool.map(ask, range(16)))
        before = tracemalloc.get_traced_memory()[0]
        with ThreadPoolExecutor(8) as pool:
            labels = list(pool.map(ask, range(200)))
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels == [expected[i % 8] for i in range(200)]
    assert after - before < 1_000_000, f"grew by {after - before:,} bytes"  # 1 MB
    assert peak - before < 20_000_000, f"peak {peak - before:,} bytes above the start"


def test_serve_port_0_prints_the_port_and_warns_off_loopback():
    process = subprocess.Popen([sys.executable, "-m", "cnnumpy", "serve", "--host", "0.0.0.0",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"at http://0\.0\.0\.0:(\d+)/", line)
        assert match and "the shipped digits model" in line, line
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
        conn.request("GET", "/api/model")
        assert json.loads(conn.getresponse().read())["name"] == "digits"
        conn.close()
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "warning: --host 0.0.0.0 makes the server reachable from other machines" in err


def test_loopback_hosts_get_no_warning(capsys):
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        serve.warn_if_exposed(host)
    assert capsys.readouterr().err == ""
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.168.1.2")


def test_serve_refuses_a_missing_model_file(tmp_path, capsys):
    from cnnumpy import cli

    assert cli.main(["serve", str(tmp_path / "none.safetensors"), "--port", "0"]) == 1
    assert "none.safetensors: no such model file" in capsys.readouterr().err


def test_the_server_thread_survives_a_client_that_vanishes(running):
    def vanish():
        with socket.create_connection(("127.0.0.1", running.port)) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 1000\r\n\r\nabc")
    threads = [threading.Thread(target=vanish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert running.json("GET", "/api/model")[0] == 200


def test_at_most_a_few_images_are_decoded_at_once(monkeypatch, png, digits):
    # Each decode may take hundreds of MB (an image may declare 16.7 million pixels), so the
    # number decoded at the same time is bounded, whatever the number of requests.
    import time

    import cnnumpy
    from cnnumpy.serve import api

    engine = api.Engine(cnnumpy.load_model(serve.default_model_path()))
    now, most, guard = [0], [0], threading.Lock()
    prepare = api.prepare_image

    def slow_prepare(*args, **kwargs):
        with guard:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.05)
        with guard:
            now[0] -= 1
        return prepare(*args, **kwargs)

    monkeypatch.setattr(api, "prepare_image", slow_prepare)
    body = png((digits[0][0][..., 0] * 255).astype(np.uint8))
    with ThreadPoolExecutor(8) as pool:
        shapes = list(pool.map(lambda _: engine.image(body).shape, range(16)))
    assert shapes == [(28, 28, 1)] * 16
    assert most[0] == api.DECODING
