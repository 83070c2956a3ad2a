"""Weights registry, downloader, cache and official importer, against an HTTP server on 127.0.0.1 only."""

import hashlib
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pulse.cli.weights import weights_cli
from pulse.weights import convert_stylegan1
from pulse.weights import registry as weights_registry
from pulse.weights import resolve
from pulse.weights import store
from pulse.cli import main as pulse_main
from pulse.weights.download import Retry
from pulse.errors import PulseError
from pulse.models.stylegan1 import Generator, GeneratorConfig
from pulse.models.generator_file import gaussian_fit, load_generator, save_generator

FAST = Retry(attempts=3, backoff=0.01, timeout=5)
PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
QUOTA_PAGE = ("<html><head><title>Google Drive - Quota exceeded</title></head><body><p>Too many users have "
              "viewed or downloaded this file recently. Please try accessing the file again later.</p></body></html>")


# ---------------------------------------------------------------- loopback server

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

    def serve_file(self, body, ranges=True, drop_after=None, delay=0.0):
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


def file_route(body=PAYLOAD, **kw):
    return lambda h, q: h.serve_file(body, **kw)


def dropping_route(body=PAYLOAD, ranges=True):
    """Hangs up halfway through the first response only."""
    calls = []

    def route(h, q):
        calls.append(1)
        h.serve_file(body, ranges=ranges, drop_after=len(body) // 2 if len(calls) == 1 else None)
    return route


def write_registry(path: Path, urls, sha256=PAYLOAD_SHA, size=None, extra=""):
    urls_toml = ", ".join(f'"{u}"' for u in urls)
    path.write_text(textwrap.dedent(f"""
        [models.blob]
        kind = "landmarks"
        resolution = 0
        licence = "test"
        description = "test payload"

        [[models.blob.files]]
        name = "blob.dat"
        urls = [{urls_toml}]
        sha256 = "{sha256 or ''}"
        size = {size or 0}
    """) + extra)
    return path


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Write a registry for the test's URLs and make pulse.weights read it."""
    def make(urls, **kw):
        path = write_registry(tmp_path / "registry.toml", urls, **kw)
        monkeypatch.setattr(weights_registry, "REGISTRY_PATH", path)
        return path
    return make


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def cache_contents(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def blob_sha(cache: Path) -> str:
    return hashlib.sha256((cache / "blob" / "blob.dat").read_bytes()).hexdigest()


# ---------------------------------------------------------------- downloads

def test_full_download_is_verified_and_cached(server, registry, cache):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"], size=len(PAYLOAD))
    path = resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert path == (cache / "blob" / "blob.dat").resolve()
    assert path.read_bytes() == PAYLOAD
    assert cache_contents(cache) == ["blob.dat"]
    assert resolve.resolve_file("blob", cache_dir=cache) == path  # cached: no second request
    assert len(server.log) == 1


def test_dropped_connection_resumes_with_range(server, registry, cache):
    server.routes["/blob"] = dropping_route(ranges=True)
    registry([server.url + "/blob"])
    path = resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    first, resume = [r for _, r, _ in server.log]
    assert first is None and 0 < int(resume.removeprefix("bytes=").rstrip("-")) <= len(PAYLOAD) // 2
    assert not path.with_name("blob.dat.part").exists()


def test_stalled_transfer_times_out_and_resumes(server, registry, cache):
    calls = []

    def stall_once(h, q):
        calls.append(1)
        if len(calls) > 1:
            return h.serve_file(PAYLOAD)
        h.send_response(200)
        h.send_header("Content-Length", str(len(PAYLOAD)))
        h.end_headers()
        h.wfile.write(PAYLOAD[:100_000])
        time.sleep(1.0)  # longer than the client's timeout
    server.routes["/blob"] = stall_once
    registry([server.url + "/blob"])
    resolve.fetch("blob", cache_dir=cache, retry=Retry(attempts=2, backoff=0.01, timeout=0.3), progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    assert server.log[1][1] is not None and server.log[1][1] != "bytes=0-"


def test_server_without_range_restarts_cleanly(server, registry, cache):
    server.routes["/blob"] = dropping_route(ranges=False)
    registry([server.url + "/blob"])
    resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    assert server.log[1][1] is not None  # asked to resume, got 200 and rewrote the .part from byte 0


def test_stale_part_file_with_wrong_bytes_is_restarted(server, registry, cache):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"])
    (cache / "blob").mkdir(parents=True)
    (cache / "blob" / "blob.dat.part").write_bytes(b"x" * 1000)
    resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    assert [r for _, r, _ in server.log] == ["bytes=1000-", None]


def test_wrong_hash_is_an_error_and_leaves_nothing(server, registry, cache):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"], sha256="0" * 64)
    with pytest.raises(PulseError, match="sha256 mismatch") as err:
        resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert "\n" not in str(err.value)
    assert cache_contents(cache) == []


@pytest.mark.parametrize("status", [404, 403])
def test_http_errors_are_one_line_with_the_url_and_the_manual_route(server, registry, cache, status):
    server.routes["/blob"] = lambda h, q: h.send_error(status)
    registry([server.url + "/blob"])
    with pytest.raises(PulseError) as err:
        resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"{server.url}/blob (HTTP {status}" in message
    assert "pulse weights import blob FILE" in message
    assert len(server.log) == 1  # a 4xx is not retried


def test_offline_gives_one_line_naming_the_url(registry, cache):
    registry(["http://127.0.0.1:9/blob"])  # discard port: nothing listens
    with pytest.raises(PulseError) as err:
        resolve.fetch("blob", cache_dir=cache, retry=Retry(attempts=2, backoff=0.01, timeout=2), progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9/blob (connection failed" in message and "gave up after 2 attempts" in message
    assert "pulse weights import blob FILE" in message


def test_server_errors_are_retried_then_mirrors_tried_in_order(server, registry, cache):
    calls = []

    def flaky(h, q):
        calls.append(1)
        h.send_error(503) if len(calls) < 3 else h.serve_file(PAYLOAD)
    server.routes["/flaky"] = flaky
    server.routes["/good"] = file_route()
    registry([server.url + "/missing", server.url + "/flaky", server.url + "/good"])
    resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    assert [p for p, _, _ in server.log] == ["/missing", "/flaky", "/flaky", "/flaky"]


def drive_form_page(h, q):
    h.serve_html('<html><head><title>Google Drive - Virus scan warning</title></head><body>'
                 '<form id="download-form" action="/download" method="get">'
                 '<input type="submit" id="uc-download-link" value="Download anyway"/>'
                 f'<input type="hidden" name="id" value="{q["id"][0]}">'
                 '<input type="hidden" name="export" value="download">'
                 '<input type="hidden" name="confirm" value="t">'
                 '<input type="hidden" name="uuid" value="abc-123"></form></body></html>')


def drive_link_page(h, q):
    h.serve_html(f'<html><a id="uc-download-link" href="/download?export=download&amp;confirm=TOKEN9&amp;'
                 f'id={q["id"][0]}">Download anyway</a></html>')


def drive_cookie_page(h, q):
    if q.get("confirm") == ["TOKEN9"]:
        return h.serve_file(PAYLOAD)
    h.serve_html("<html>large file</html>", cookie="download_warning_13058876669334088843_X=TOKEN9; Path=/")


@pytest.mark.parametrize("page, confirmed", [
    (drive_form_page, {"id": ["F1"], "export": ["download"], "confirm": ["t"], "uuid": ["abc-123"]}),
    (drive_link_page, {"id": ["F1"], "export": ["download"], "confirm": ["TOKEN9"]}),
    (drive_cookie_page, None),
])
def test_drive_confirmation_page_is_followed(server, registry, cache, page, confirmed):
    seen = []

    def download(h, q):
        seen.append(q)
        if q == confirmed:
            h.serve_file(PAYLOAD)
        else:
            h.serve_html("<html>wrong</html>")
    server.routes["/uc"] = page
    server.routes["/download"] = download
    registry([server.url + "/uc?export=download&id=F1"])
    resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    assert len(server.log) == 2


@pytest.mark.parametrize("status", [200, 403])
def test_drive_quota_page_is_reported_as_such(server, registry, cache, status):
    server.routes["/uc"] = lambda h, q: h.serve_html(QUOTA_PAGE, status=status)
    registry([server.url + "/uc?id=F1"])
    with pytest.raises(PulseError, match="Google Drive quota exceeded: too many users") as err:
        resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert "\n" not in str(err.value)
    assert len(server.log) == 1


def test_unexpected_web_page_is_not_stored(server, registry, cache):
    server.routes["/login"] = lambda h, q: h.serve_html("<html><title>Sign in</title>please log in</html>")
    registry([server.url + "/login"])
    with pytest.raises(PulseError, match=r"got a web page \('Sign in'\) instead of the file"):
        resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert cache_contents(cache) == []


def test_bz2_url_is_decompressed_and_checked(server, registry, cache):
    import bz2
    server.routes["/blob.dat.bz2"] = file_route(bz2.compress(PAYLOAD))
    registry([server.url + "/blob.dat.bz2"])
    resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    assert blob_sha(cache) == PAYLOAD_SHA
    assert cache_contents(cache) == ["blob.dat"]


def test_no_sha256_needs_explicit_trust_then_pins(server, registry, cache):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"], sha256=None)
    with pytest.raises(PulseError, match="--no-verify"):
        resolve.resolve_file("blob", cache_dir=cache)
    assert server.log == []
    path = resolve.fetch("blob", cache_dir=cache, trust_unverified=True, retry=FAST, progress=False)
    assert (cache / "blob" / "blob.dat.sha256").read_text().split()[0] == PAYLOAD_SHA
    assert resolve.resolve_file("blob", cache_dir=cache) == path
    path.write_bytes(PAYLOAD[:-1] + b"\0")  # same size, different bytes: the pin catches it
    [status] = store.verify("blob", cache_dir=cache)
    assert status.state == "corrupt" and not path.exists()


def test_truncated_cache_file_is_caught_by_verify_and_downloaded_again(server, registry, cache):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"])
    path = resolve.fetch("blob", cache_dir=cache, retry=FAST, progress=False)
    path.write_bytes(PAYLOAD[:1000])
    result = CliRunner().invoke(weights_cli, ["verify", "blob", "--cache-dir", str(cache)])
    assert result.exit_code == 1
    assert "corrupt" in result.output and "deleted" in result.output
    assert not path.exists()
    assert resolve.resolve_file("blob", cache_dir=cache) == path
    assert blob_sha(cache) == PAYLOAD_SHA
    assert len(server.log) == 2


def _fetch_in_child(cache, barrier, results):
    barrier.wait()
    start = time.time()
    try:
        path = resolve.fetch("blob", cache_dir=cache, retry=Retry(attempts=2, backoff=0.01), progress=False)
        results.put({"start": start, "path": str(path)})
    except Exception as err:  # reported to the parent, which fails the test
        results.put({"start": start, "error": repr(err)})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (and fcntl locks)")
def test_two_processes_downloading_one_file_share_one_download(server, registry, cache, capfd):
    transfers_done, served = [], threading.Event()

    def slow(h, q):  # ~1 s, so the second process arrives mid-way
        h.serve_file(PAYLOAD, delay=0.05)
        transfers_done.append(time.time())
        served.set()
    server.routes["/blob"] = slow
    registry([server.url + "/blob"])
    context = multiprocessing.get_context("fork")  # children inherit the imports and the patched registry
    barrier, results = context.Barrier(2), context.Queue()
    procs = [context.Process(target=_fetch_in_child, args=(cache, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert [p.exitcode for p in procs] == [0, 0]
    assert all("error" not in o for o in outcomes), outcomes
    assert served.wait(5)
    assert len(server.log) == len(transfers_done) == 1
    assert all(o["start"] < transfers_done[0] for o in outcomes)  # both were inside fetch during the one transfer
    assert "waiting for another pulse process" in capfd.readouterr().err
    assert {o["path"] for o in outcomes} == {str((cache / "blob" / "blob.dat").resolve())}
    assert blob_sha(cache) == PAYLOAD_SHA
    assert cache_contents(cache) == ["blob.dat"]


# ---------------------------------------------------------------- registry, names, resolve

def test_registry_names_cannot_escape_the_cache(tmp_path, monkeypatch, cache):
    path = write_registry(tmp_path / "bad.toml", ["http://127.0.0.1:9/x"])
    path.write_text(path.read_text().replace('name = "blob.dat"', 'name = "../../evil"'))
    with pytest.raises(PulseError, match="not a valid name"):
        weights_registry.load_registry(path)
    path.write_text(path.read_text().replace('"../../evil"', '".."'))
    with pytest.raises(PulseError, match="not a valid name"):
        weights_registry.load_registry(path)
    with pytest.raises(PulseError, match="outside"):
        store._inside(cache, "..", "x")


def test_shipped_registry_parses_and_records_what_is_unknown():
    models = weights_registry.load_registry()
    assert {"pulse-faces-128", "ffhq-1024", "dlib-68-landmarks"} <= set(models)
    assert weights_registry.DEFAULT_GENERATOR == "pulse-faces-128"
    bundled = models["pulse-faces-128"].files[0]
    assert bundled.path == "pulse-faces-128.pt" and not bundled.urls
    assert [f.name for f in models["ffhq-1024"].files] == ["synthesis.pt", "mapping.pt"]
    assert models["dlib-68-landmarks"].files[0].sha256 is None  # unknown: downloads need --no-verify


def test_resolve_generator_paths_and_names(tmp_path, tiny_generator_file, monkeypatch):
    assert resolve.resolve_generator(tiny_generator_file) == tiny_generator_file
    assert resolve.resolve_generator(str(tiny_generator_file)) == tiny_generator_file
    with pytest.raises(PulseError, match="generator file not found"):
        resolve.resolve_generator(tmp_path / "nope.pt")
    with pytest.raises(PulseError, match="no such generator file or registry name"):
        resolve.resolve_generator("no-such-model")
    with pytest.raises(PulseError, match="not a generator"):
        resolve.resolve_generator("dlib-68-landmarks")
    monkeypatch.setattr(weights_registry, "WEIGHTS_DIR", tmp_path / "weights")  # a checkout without the trained file
    with pytest.raises(PulseError) as err:
        resolve.resolve_generator("pulse-faces-128", cache_dir=tmp_path / "cache")
    assert str(err.value).startswith("the bundled generator pulse-faces-128 is not installed "
                                     "(weights/pulse-faces-128.pt missing): pass --generator PATH")


def test_bundled_generator_from_the_repository_or_imported(tmp_path, tiny_generator_file, monkeypatch, cache):
    # a registry entry like the bundled generator's, but with no pin: any 128 px generator may be imported
    (tmp_path / "registry.toml").write_text(textwrap.dedent("""
        [models.faces-128]
        kind = "generator"
        resolution = 128
        licence = "test"
        description = "test"
        [[models.faces-128.files]]
        name = "faces-128.pt"
        path = "faces-128.pt"
        sha256 = ""
        size = 0
    """))
    monkeypatch.setattr(weights_registry, "REGISTRY_PATH", tmp_path / "registry.toml")
    monkeypatch.setattr(weights_registry, "WEIGHTS_DIR", tmp_path / "weights")  # a checkout without the file
    with pytest.raises(PulseError, match="a 32 px generator, but faces-128 is 128 px"):
        resolve.import_files("faces-128", [tiny_generator_file], cache_dir=cache)
    g = Generator(GeneratorConfig())  # the compact 128 px layout
    save_generator(tmp_path / "trained.pt", g, gaussian_fit(g.mapping, g.style_dim, samples=1000), {})
    [line] = resolve.import_files("faces-128", [tmp_path / "trained.pt"], cache_dir=cache)
    imported = (cache / "faces-128" / "faces-128.pt").resolve()
    assert "pinned" in line and imported.read_bytes() == (tmp_path / "trained.pt").read_bytes()
    assert resolve.resolve_generator("faces-128", cache_dir=cache) == imported

    (tmp_path / "weights").mkdir()  # a checkout that ships the file: that one wins
    shipped = tmp_path / "weights" / "faces-128.pt"
    shipped.write_bytes(tiny_generator_file.read_bytes())
    assert resolve.resolve_generator("faces-128", cache_dir=cache) == shipped.resolve()


# ---------------------------------------------------------------- CLI

def test_cli_list_import_path_verify(tmp_path, tiny_generator_file, monkeypatch, cache):
    path = write_registry(tmp_path / "registry.toml", ["http://127.0.0.1:9/blob"], extra=textwrap.dedent("""
        [models.tiny-32]
        kind = "generator"
        resolution = 32
        licence = "test"
        description = "tiny test generator"

        [[models.tiny-32.files]]
        name = "tiny-32.pt"
        urls = ["http://127.0.0.1:9/tiny-32.pt"]
    """))
    monkeypatch.setattr(weights_registry, "REGISTRY_PATH", path)
    monkeypatch.setenv("PULSE_CACHE", str(cache))
    run = CliRunner().invoke

    listed = run(pulse_main, ["weights", "list"])
    assert listed.exit_code == 0 and "tiny-32" in listed.output and "not installed" in listed.output

    missing = run(pulse_main, ["weights", "path", "tiny-32"])
    assert missing.exit_code == 2 and "pulse weights download tiny-32 --no-verify" in missing.output
    missing = run(pulse_main, ["weights", "info", "tiny-32"])  # says how to get it; downloads nothing
    assert missing.exit_code == 2 and "pulse weights download tiny-32 --no-verify" in missing.output

    imported = run(pulse_main, ["weights", "import", "tiny-32", str(tiny_generator_file)])
    assert imported.exit_code == 0, imported.output
    assert "pinned" in imported.output
    target = (cache / "tiny-32" / "tiny-32.pt").resolve()
    assert target.read_bytes() == tiny_generator_file.read_bytes()

    assert run(pulse_main, ["weights", "path", "tiny-32"]).output.strip() == str(target)
    assert resolve.resolve_generator("tiny-32") == target
    info = run(pulse_main, ["weights", "info", "tiny-32"])
    assert info.exit_code == 0 and info.output.startswith(f"{target} (")
    assert "architecture: stylegan1, 32 px" in info.output and "recommended search settings: none" in info.output
    verified = run(pulse_main, ["weights", "verify", "tiny-32"])
    assert verified.exit_code == 0 and ": ok (sha256" in verified.output

    blob = tmp_path / "blob.bin"
    blob.write_bytes(PAYLOAD[:-1])
    refused = run(pulse_main, ["weights", "import", "blob", str(blob)])
    assert refused.exit_code == 2 and "does not match the registry" in refused.output
    assert not (cache / "blob" / "blob.dat").exists()
    not_a_generator = run(pulse_main, ["weights", "import", "tiny-32", str(blob)])
    assert not_a_generator.exit_code == 2 and "not a readable generator file" in not_a_generator.output


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pulse.weights", "path", "no-such-name"],
                            capture_output=True, text=True, env={**os.environ, "PULSE_CACHE": str(tmp_path)})
    assert result.returncode == 2  # a PulseError: nothing done, one line (the policy of every command)
    assert result.stderr.strip().startswith("error: no-such-name: not a weights name in the registry")


# ---------------------------------------------------------------- official StyleGAN-1 importer

@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """PULSE-style synthesis.pt (blur kernels left out) + mapping.pt with random values in the official FFHQ
    1024 layout (every parameter, not just the initialised ones), and the module they load into directly."""
    torch.manual_seed(0)
    direct = Generator(GeneratorConfig.official_ffhq()).eval().requires_grad_(False)
    for name, p in direct.named_parameters():
        p.copy_(torch.randn_like(p) * (0.1 if "bias" in name or "noise" in name else 1.0))
    folder = tmp_path_factory.mktemp("official")
    synthesis = {k: v for k, v in direct.synthesis.state_dict().items() if not k.endswith("intermediate.kernel")}
    torch.save(synthesis, folder / "synthesis.pt")
    torch.save(direct.mapping.state_dict(), folder / "mapping.pt")
    return direct, folder / "synthesis.pt", folder / "mapping.pt"


def test_official_import_renders_identically_to_the_directly_loaded_module(official, cache):
    direct, synthesis, mapping = official
    report = resolve.import_files("ffhq-1024", [synthesis, mapping], cache_dir=cache, fit_samples=4000, device="cpu")
    text = "\n".join(report)
    assert f"accepted {len(torch.load(synthesis))} synthesis tensors" in text and "accepted 16 mapping tensors" in text
    assert "filled 8 missing blur kernels" in text and "4,000 samples on cpu" in text

    path = resolve.resolve_generator("ffhq-1024", cache_dir=cache)
    assert path == (cache / "ffhq-1024" / "ffhq-1024.pt").resolve()
    loaded = load_generator(path)
    assert loaded.metadata["resolution"] == 1024 and loaded.metadata["alignment"] == "ffhq"
    assert loaded.metadata["data"] == "FFHQ" and loaded.metadata["licence"] == "CC BY-NC 4.0 (NVIDIA)"
    fit = gaussian_fit(direct.mapping, 512, samples=4000)
    assert torch.equal(loaded.mean, fit["mean"]) and torch.equal(loaded.std, fit["std"])

    ws = torch.randn(1, 18, 512, generator=torch.Generator().manual_seed(1))
    noise = direct.random_noise(1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = direct(ws=ws, noise=noise)
        got = loaded.generator(ws=ws, noise=noise)
    assert torch.isfinite(expected).all() and expected.std() > 0
    assert torch.equal(got, expected)
    [status] = store.verify("ffhq-1024", cache_dir=cache)  # the sources were read, not kept
    assert status.state == "ok" and status.path == path


def test_official_download_is_converted_and_resolved(official, server, cache, tmp_path, monkeypatch):
    direct, synthesis, mapping = official
    server.routes["/synthesis.pt"] = file_route(synthesis.read_bytes())
    server.routes["/mapping.pt"] = file_route(mapping.read_bytes())
    text = weights_registry.REGISTRY_PATH.read_text()
    for name in ("synthesis.pt", "mapping.pt"):
        text = re.sub(rf'(name = "{name}"\nurls = )\[[^]]*\]', rf'\1["{server.url}/{name}"]', text)
    (tmp_path / "registry.toml").write_text(text)
    monkeypatch.setattr(weights_registry, "REGISTRY_PATH", tmp_path / "registry.toml")

    with pytest.raises(PulseError, match="no sha256 for synthesis.pt.*--no-verify"):
        resolve.resolve_generator("ffhq-1024", cache_dir=cache)
    path = resolve.fetch("ffhq-1024", cache_dir=cache, trust_unverified=True, retry=FAST, progress=False,
                         fit_samples=2000, device="cpu")
    assert [p for p, _, _ in server.log] == ["/synthesis.pt", "/mapping.pt"]
    assert resolve.resolve_generator("ffhq-1024", cache_dir=cache) == path
    state = load_generator(path).generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in direct.state_dict().items())
    assert [s.state for s in store.verify("ffhq-1024", cache_dir=cache)] == ["ok", "ok", "ok"]  # 2 pinned + 1


def test_official_import_refuses_what_it_cannot_account_for(tmp_path):
    mapping = Generator(GeneratorConfig.official_ffhq()).mapping.state_dict()
    torch.save(mapping, tmp_path / "mapping.pt")
    with pytest.raises(PulseError, match=r"synthesis: \d+ tensors missing"):
        convert_stylegan1.import_official_stylegan1([tmp_path / "mapping.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    torch.save({**mapping, "g_ema.conv1.weight": torch.zeros(1)}, tmp_path / "stylegan2.pt")
    with pytest.raises(PulseError, match="'g_ema.conv1.weight' is not part of the official"):
        convert_stylegan1.import_official_stylegan1([tmp_path / "stylegan2.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    torch.save({"dense0.weight": np.zeros(3)}, tmp_path / "pickled.pt")
    with pytest.raises(PulseError, match="refused: reading it would run pickled code"):
        convert_stylegan1.import_official_stylegan1([tmp_path / "pickled.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    torch.save({**mapping, "dense0.weight": torch.zeros(3, 3)}, tmp_path / "shape.pt")
    with pytest.raises(PulseError, match=r"dense0.weight has shape \(3, 3\), expected \(512, 512\)"):
        convert_stylegan1.import_official_stylegan1([tmp_path / "shape.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    assert not (tmp_path / "out.pt").exists()


def test_a_wheel_carries_the_registry_and_the_bundled_generator(tmp_path):
    """Installed from a wheel (no checkout around it), pulse still finds weights/ as pulse/_weights."""
    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parent.parent
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(root)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("pulse-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = ("from pulse.weights.resolve import resolve_generator; print(resolve_generator('pulse-faces-128')); "
             "from pulse.weights.registry import load_registry; print(len(load_registry()))")
    env = {**os.environ, "PYTHONPATH": str(site), "PULSE_CACHE": str(tmp_path / "cache")}
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    generator, models = found.stdout.split()
    assert Path(generator) == site / "pulse" / "_weights" / "pulse-faces-128.pt" and int(models) >= 3
    assert Path(generator).read_bytes() == (root / "weights" / "pulse-faces-128.pt").read_bytes()
