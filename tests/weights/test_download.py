"""Downloads against an HTTP server on 127.0.0.1 only: resume, retries, mirrors, Google Drive pages, checks, and
two processes sharing one download."""

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from pulse.errors import PulseError
from pulse.weights import resolve
from pulse.weights.download import Retry

QUOTA_PAGE = ("<html><head><title>Google Drive - Quota exceeded</title></head><body><p>Too many users have "
              "viewed or downloaded this file recently. Please try accessing the file again later.</p></body></html>")


def dropping_route(body, ranges=True):
    """Serves body; hangs up halfway through the first response only."""
    calls = []

    def route(h, q):
        calls.append(1)
        h.serve_file(body, ranges=ranges, drop_after=len(body) // 2 if len(calls) == 1 else None)
    return route


def cache_contents(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_full_download_is_verified_and_cached(server, registry, cache, payload, fast_retry, file_route):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"], size=len(payload))
    path = resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert path == (cache / "blob" / "blob.dat").resolve()
    assert path.read_bytes() == payload
    assert cache_contents(cache) == ["blob.dat"]
    assert resolve.resolve_file("blob", cache_dir=cache) == path  # cached: no second request
    assert len(server.log) == 1


def test_dropped_connection_resumes_with_range(server, registry, cache, payload, payload_sha, fast_retry, blob_sha):
    server.routes["/blob"] = dropping_route(payload, ranges=True)
    registry([server.url + "/blob"])
    path = resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert blob_sha(cache) == payload_sha
    first, resume = [r for _, r, _ in server.log]
    assert first is None and 0 < int(resume.removeprefix("bytes=").rstrip("-")) <= len(payload) // 2
    assert not path.with_name("blob.dat.part").exists()


def test_stalled_transfer_times_out_and_resumes(server, registry, cache, payload, payload_sha, blob_sha):
    calls = []

    def stall_once(h, q):
        calls.append(1)
        if len(calls) > 1:
            return h.serve_file(payload)
        h.send_response(200)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload[:100_000])
        time.sleep(1.0)  # longer than the client's timeout
    server.routes["/blob"] = stall_once
    registry([server.url + "/blob"])
    resolve.fetch("blob", cache_dir=cache, retry=Retry(attempts=2, backoff=0.01, timeout=0.3), progress=False)
    assert blob_sha(cache) == payload_sha
    assert server.log[1][1] is not None and server.log[1][1] != "bytes=0-"


def test_server_without_range_restarts_cleanly(server, registry, cache, payload, payload_sha, fast_retry, blob_sha):
    server.routes["/blob"] = dropping_route(payload, ranges=False)
    registry([server.url + "/blob"])
    resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert blob_sha(cache) == payload_sha
    assert server.log[1][1] is not None  # asked to resume, got 200 and rewrote the .part from byte 0


def test_stale_part_file_with_wrong_bytes_is_restarted(server, registry, cache, payload_sha, fast_retry, file_route,
                                                       blob_sha):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"])
    (cache / "blob").mkdir(parents=True)
    (cache / "blob" / "blob.dat.part").write_bytes(b"x" * 1000)
    resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert blob_sha(cache) == payload_sha
    assert [r for _, r, _ in server.log] == ["bytes=1000-", None]


def test_wrong_hash_is_an_error_and_leaves_nothing(server, registry, cache, fast_retry, file_route):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"], sha256="0" * 64)
    with pytest.raises(PulseError, match="sha256 mismatch") as err:
        resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert "\n" not in str(err.value)
    assert "another file than the registry pins" in str(err.value) and "Without network" not in str(err.value)
    assert cache_contents(cache) == []


@pytest.mark.parametrize("status", [404, 403])
def test_http_errors_are_one_line_with_the_url_and_the_manual_route(server, registry, cache, status, fast_retry):
    server.routes["/blob"] = lambda h, q: h.send_error(status)
    registry([server.url + "/blob"])
    with pytest.raises(PulseError) as err:
        resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"{server.url}/blob (HTTP {status}" in message and "Without network" in message
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


def test_server_errors_are_retried_then_mirrors_tried_in_order(server, registry, cache, payload, payload_sha,
                                                               fast_retry, file_route, blob_sha):
    calls = []

    def flaky(h, q):
        calls.append(1)
        h.send_error(503) if len(calls) < 3 else h.serve_file(payload)
    server.routes["/flaky"] = flaky
    server.routes["/good"] = file_route()
    registry([server.url + "/missing", server.url + "/flaky", server.url + "/good"])
    resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert blob_sha(cache) == payload_sha
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
        return h.serve_file()  # the payload
    h.serve_html("<html>large file</html>", cookie="download_warning_13058876669334088843_X=TOKEN9; Path=/")


@pytest.mark.parametrize("page, confirmed", [
    (drive_form_page, {"id": ["F1"], "export": ["download"], "confirm": ["t"], "uuid": ["abc-123"]}),
    (drive_link_page, {"id": ["F1"], "export": ["download"], "confirm": ["TOKEN9"]}),
    (drive_cookie_page, None),
])
def test_drive_confirmation_page_is_followed(server, registry, cache, page, confirmed, payload, payload_sha, fast_retry,
                                             blob_sha):
    seen = []

    def download(h, q):
        seen.append(q)
        if q == confirmed:
            h.serve_file(payload)
        else:
            h.serve_html("<html>wrong</html>")
    server.routes["/uc"] = page
    server.routes["/download"] = download
    registry([server.url + "/uc?export=download&id=F1"])
    resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert blob_sha(cache) == payload_sha
    assert len(server.log) == 2


@pytest.mark.parametrize("status", [200, 403])
def test_drive_quota_page_is_reported_as_such(server, registry, cache, status, fast_retry):
    server.routes["/uc"] = lambda h, q: h.serve_html(QUOTA_PAGE, status=status)
    registry([server.url + "/uc?id=F1"])
    with pytest.raises(PulseError, match="Google Drive quota exceeded: too many users") as err:
        resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert "\n" not in str(err.value)
    assert len(server.log) == 1


def test_unexpected_web_page_is_not_stored(server, registry, cache, fast_retry):
    server.routes["/login"] = lambda h, q: h.serve_html("<html><title>Sign in</title>please log in</html>")
    registry([server.url + "/login"])
    with pytest.raises(PulseError, match=r"got a web page \('Sign in'\) instead of the file"):
        resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert cache_contents(cache) == []


def test_bz2_url_is_decompressed_and_checked(server, registry, cache, payload, payload_sha, fast_retry, file_route,
                                             blob_sha):
    import bz2
    server.routes["/blob.dat.bz2"] = file_route(bz2.compress(payload))
    registry([server.url + "/blob.dat.bz2"])
    resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    assert blob_sha(cache) == payload_sha
    assert cache_contents(cache) == ["blob.dat"]


def _fetch_in_child(cache, barrier, results):
    barrier.wait()
    start = time.time()
    try:
        path = resolve.fetch("blob", cache_dir=cache, retry=Retry(attempts=2, backoff=0.01), progress=False)
        results.put({"start": start, "path": str(path)})
    except Exception as err:  # reported to the parent, which fails the test
        results.put({"start": start, "error": repr(err)})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (and fcntl locks)")
def test_two_processes_downloading_one_file_share_one_download(server, registry, cache, capfd, payload, payload_sha,
                                                               blob_sha):
    transfers_done, served = [], threading.Event()

    def slow(h, q):  # ~1 s, so the second process arrives mid-way
        h.serve_file(payload, delay=0.05)
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
    assert blob_sha(cache) == payload_sha
    assert cache_contents(cache) == ["blob.dat"]
