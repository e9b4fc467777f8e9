"""The HTTP server of ``cnnumpy serve``: the standard library's threaded ``http.server``,
so serving needs nothing beyond Pillow (to read images).

Routes:

- ``GET /``: the page; ``GET /static/NAME``: one of the page's files, only those shipped in
  the package's ``static`` folder.
- ``GET /api/model``: the model's summary (:meth:`Engine.model_info`).
- ``POST /api/predict[?top=K]``: body, an image file's bytes (PNG, JPEG, BMP or GIF);
  answer ``{"top": [{"label", "index", "probability"}...], "input": ..., "layers": [...]}``.
- ``POST /api/explain?layer=I&row=R&col=C&channel=F``: the same body; answer how that output
  value of layer ``I`` was made (``I`` as in ``/api/model``'s rows: a graph model's nodes).

Every error is a JSON ``{"error": "..."}`` with a 4xx status; the server never stops for a
bad request.
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from cnnumpy.serve.api import BadInput, Engine

MAX_BODY = 10 * 1024 * 1024
"""The default limit on a request body, in bytes (10 MiB)."""

IMAGE_TYPES = {"image/png", "image/jpeg", "image/bmp", "image/x-ms-bmp", "image/gif",
               "application/octet-stream", ""}
"""The ``Content-Type`` values a POST may have ("" when there is none)."""

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Security headers sent with every answer: the page may load nothing from another host."""


def static_files() -> dict[str, Path]:
    """The page's files: each plain file directly in the package's ``static`` folder, by name.
    Nothing else is ever served."""
    folder = Path(str(resources.files("cnnumpy.serve") / "static")).resolve()
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.is_symlink() and p.resolve().parent == folder}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    """One request: routes, limits and JSON errors (see the module docstring)."""

    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "cnnumpy-serve"
    sys_version = ""
    timeout = 30  # seconds a connection may sit idle or trickle its request

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """The standard library's own errors (a malformed request line, a too-long header)
        as JSON too."""
        self.close_connection = True
        if code == 501:  # a method no route takes
            code, message = 405, f"method {self.command!r} is not allowed"
        self._error(code, message or self.responses.get(code, ("error",))[0])

    def _host_ok(self) -> bool:
        """Bound to a loopback address, answer only requests addressed to one, so that a web
        page elsewhere cannot reach the server through a DNS name pointing here."""
        if not self.server.loopback:
            return True
        host = self.headers.get("Host", "")
        name = host[1:host.find("]")] if host.startswith("[") else host.split(":")[0]
        return is_loopback(name)

    def do_GET(self) -> None:
        if not self._host_ok():
            self.close_connection = True
            return self._error(403, "this server answers only requests to a loopback host")
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/model":
            return self._json(200, self.server.model_info)
        if path in ("/api/predict", "/api/explain"):
            return self._error(405, f"{path} takes POST with an image file as the body")
        return self._error(404, f"no such page: {path}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _static(self, name: str) -> None:
        file = self.server.static.get(name)  # by exact name: no path ever reaches the disk
        if file is None:
            return self._error(404, f"no such file: /static/{name}")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/javascript":
            kind += "; charset=utf-8"
        self._send(200, file.read_bytes(), kind)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise BadInput("chunked bodies are not accepted: send a Content-Length", 411)
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise BadInput("missing Content-Length header", 411)
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise BadInput(f"bad Content-Length {length!r}") from None
        if size > self.server.max_body:
            self.close_connection = True  # the body is left unread
            raise BadInput(f"body of {size:,} bytes is over the limit of "
                           f"{self.server.max_body:,} bytes", 413)
        body = self.rfile.read(size)
        if len(body) < size:
            self.close_connection = True
            raise BadInput(f"the body ended after {len(body):,} of its {size:,} bytes")
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            raise BadInput(f"Content-Type {kind!r} is not accepted: send image/png, image/jpeg, "
                           "image/bmp, image/gif or application/octet-stream", 415)
        return body

    def do_POST(self) -> None:
        if not self._host_ok():
            self.close_connection = True
            return self._error(403, "this server answers only requests to a loopback host")
        url = urlsplit(self.path)
        try:
            if url.path not in ("/api/predict", "/api/explain"):
                self.close_connection = True  # the body is left unread
                raise BadInput(f"no such route: POST {url.path}", 404)
            body = self._body()
            query = _query(url.query, ("top",) if url.path == "/api/predict"
                           else ("layer", "row", "col", "channel"), url.path)
            engine = self.server.engine
            if url.path == "/api/predict":
                result = engine.predict(body, query.get("top"))
            else:
                missing = {"layer", "row", "col", "channel"} - set(query)
                if missing:
                    raise BadInput(f"/api/explain needs the query parameters layer, row, col "
                                   f"and channel; missing {', '.join(sorted(missing))}")
                result = engine.explain(body, query["layer"], query["row"], query["col"],
                                        query["channel"])
        except BadInput as exc:
            return self._error(exc.status, str(exc))
        self._json(200, result)


def _query(text: str, names: tuple[str, ...], route: str) -> dict[str, int]:
    """The query string's parameters, each one of ``names`` and a whole number >= 0."""
    values = {}
    for name, items in parse_qs(text, keep_blank_values=True).items():
        if name not in names:
            raise BadInput(f"{route}: unknown query parameter {name!r}; expected "
                           f"{', '.join(names)}")
        if len(items) != 1 or not items[0].isdigit() or len(items[0]) > 9:
            raise BadInput(f"{route}: {name} must be one whole number >= 0, received "
                           f"{items!r}")
        values[name] = int(items[0])
    if values.get("top") == 0:
        raise BadInput(f"{route}: top must be at least 1")
    return values


class Server(ThreadingHTTPServer):
    """The threaded server: each connection on its own thread, closed with the server.

    Args:
        address: ``(host, port)``; port 0 picks a free one (see ``server_address``).
        engine: the model and its computations.
        max_body: the largest request body in bytes.
        verbose: log each request on stderr.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, max_body: int = MAX_BODY,
                 verbose: bool = False) -> None:
        self.engine = engine
        self.model_info = engine.model_info()
        self.max_body = int(max_body)
        self.static = static_files()
        self.verbose = verbose
        self.loopback = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or stalls is no error of the server's; others are logged."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The address the server listens on, ``http://host:port/``."""
        # an AF_INET or AF_INET6 server's address starts with (host, port), host a str
        host, port = cast(tuple[str, int], self.server_address[:2])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


def warn_if_exposed(host: str) -> None:
    """Print a warning on stderr when ``host`` is reachable from other machines."""
    if not is_loopback(host):
        print(f"warning: --host {host} makes the server reachable from other machines; it "
              "has no authentication and is meant for this machine only (127.0.0.1)",
              file=sys.stderr)
