"""Weights fixtures: an HTTP server on 127.0.0.1 only, a registry written for each test, a cache folder, and the
payload those serve (with its helpers, as fixtures that return the function)."""

import hashlib
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from pulse.weights import registry as weights_registry
from pulse.weights.download import Retry

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        self.server.log.append((parts.path, self.headers.get("Range"), time.time()))
        route = self.server.routes.get(parts.path)
        if route is None:
            return self.send_error(404)
        route(self, parse_qs(parts.query))

    def serve_file(self, body=PAYLOAD, ranges=True, drop_after=None, delay=0.0):
        start = 0
        if ranges and self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
            self.send_header("Accept-Ranges", "bytes" if ranges else "none")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        if drop_after is not None:  # promise everything, send part, hang up
            self.wfile.write(rest[:drop_after])
            self.close_connection = True
            return
        for i in range(0, len(rest), 16_384):
            self.wfile.write(rest[i:i + 16_384])
            time.sleep(delay)

    def serve_html(self, text, cookie=None, status=200):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(data)


def _registry_entry(name: str, kind: str, resolution: int, file: str, urls=(), path: str | None = None,
                    sha256: str | None = None, size: int | None = None, description: str = "test") -> str:
    """One model of a registry.toml, in the format of weights/registry.toml."""
    where = f'path = "{path}"' if path else "urls = [" + ", ".join(f'"{u}"' for u in urls) + "]"
    return textwrap.dedent(f"""
        [models.{name}]
        kind = "{kind}"
        resolution = {resolution}
        licence = "test"
        description = "{description}"

        [[models.{name}.files]]
        name = "{file}"
        {where}
        sha256 = "{sha256 or ''}"
        size = {size or 0}
    """)


def _write_registry(path: Path, urls, sha256=PAYLOAD_SHA, size=None, extra=""):
    path.write_text(_registry_entry("blob", "landmarks", 0, "blob.dat", urls, sha256=sha256, size=size,
                                    description="test payload") + extra)
    return path


def _blob_sha(cache: Path) -> str:
    return hashlib.sha256((cache / "blob" / "blob.dat").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def registry_entry():
    """``registry_entry(name, kind, resolution, file, urls=(), path=None, sha256=None, size=None)`` -> TOML."""
    return _registry_entry


@pytest.fixture(scope="session")
def payload() -> bytes:
    """300 kB of random bytes: the file the test server serves (by default) and the registry pins."""
    return PAYLOAD


@pytest.fixture(scope="session")
def payload_sha() -> str:
    return PAYLOAD_SHA


@pytest.fixture(scope="session")
def fast_retry() -> Retry:
    return Retry(attempts=3, backoff=0.01, timeout=5)


@pytest.fixture(scope="session")
def file_route():
    """file_route(body=payload, **serve_file options): a server route serving ``body``."""
    def route(body=PAYLOAD, **kw):
        return lambda h, q: h.serve_file(body, **kw)
    return route


@pytest.fixture(scope="session")
def write_registry():
    """write_registry(path, urls, sha256=payload_sha, size=None, extra=""): a registry with one model, "blob"."""
    return _write_registry


@pytest.fixture(scope="session")
def blob_sha():
    """blob_sha(cache): sha256 of the cached blob.dat."""
    return _blob_sha


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.log = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Write a registry for the test's URLs and make pulse.weights read it."""
    def make(urls, **kw):
        path = _write_registry(tmp_path / "registry.toml", urls, **kw)
        monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(path))
        return path
    return make


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"
