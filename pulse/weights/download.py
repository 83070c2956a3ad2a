"""HTTP downloads that survive bad networks: mirrors, retries, resume, Google Drive pages, size and sha256.

Bytes land in ``<dest>.part`` (``<dest>.bz2.part`` for a ``.bz2`` URL, decompressed afterwards) and reach
``dest`` by an atomic rename only once their size and sha256 match, so ``dest`` is never partial or wrong.
Callers serialise downloads of one file with a lock (``pulse.weights`` does); this module does not lock.
"""

from __future__ import annotations

import bz2
import hashlib
import os
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from ..errors import PulseError
from ..progress import progress_bar

CHUNK = 1 << 20
NETWORK_CHUNK = 1 << 16  # small: urllib3 drops the unfilled tail of a read when the connection breaks
PAGE_LIMIT = 1 << 20  # a confirmation or quota page is a few kB; read no more of an HTML answer than this
DRIVE_QUOTA_MARKERS = ("Too many users have viewed or downloaded this file recently", "Quota exceeded")
USER_AGENT = "pulse-weights-downloader"


@dataclass(frozen=True)
class Retry:
    """How hard to try one URL before moving to the next mirror (tests shorten the backoff)."""

    attempts: int = 4
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled after each further failure
    timeout: float = 30.0  # seconds to connect, and between two received chunks


class DownloadFailed(PulseError):
    """No URL gave the file; ``failures`` says why for each one, in the order they were tried.
    ``wrong_file``: every server answered, but with other bytes than the registry pins (not a network problem)."""

    def __init__(self, dest: Path, failures: list[str], wrong_file: bool = False):
        self.failures, self.wrong_file = failures, wrong_file
        super().__init__(f"could not download {dest.name}: " + "; ".join(failures))


class _Transient(Exception):
    """Timeouts, resets, 5xx, short bodies: worth another attempt at the same URL."""


class _UrlFailed(Exception):
    """This URL will not give the file (4xx, quota, an unexpected web page, wrong bytes): try the next one."""


class _WrongFile(_UrlFailed):
    """The URL delivered a whole file, but not the one pinned (size, sha256, not bz2 data)."""


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(urls, dest, *, sha256: str | None = None, size: int | None = None, retry: Retry = Retry(),
             progress: bool = True) -> str:
    """Fetch ``dest`` from the first of ``urls`` that delivers it; return the sha256 of what was stored.

    ``sha256`` / ``size`` describe the stored file (after decompression); ``None`` skips that check, and
    then the server's Content-Length is the only guard against truncation.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures, wrong = [], []
    with requests.Session() as session:
        session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})  # bytes as stored
        for url in urls:
            try:
                return _download_one(session, url, dest, sha256, size, retry, progress)
            except _UrlFailed as err:
                failures.append(f"{url} ({err})")
                wrong.append(isinstance(err, _WrongFile))
    raise DownloadFailed(dest, failures, wrong_file=bool(wrong) and all(wrong))


def _download_one(session, url, dest: Path, sha256, size, retry: Retry, progress: bool) -> str:
    compressed = urlsplit(url).path.endswith(".bz2")
    part = dest.with_name(dest.name + (".bz2.part" if compressed else ".part"))
    stored = dest.with_name(dest.name + ".unpacked") if compressed else part
    label = f"{dest.name} from {urlsplit(url).netloc}"
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        _fetch_with_retries(session, url, part, retry, progress, label)
        try:
            if compressed:
                _decompress_bz2(part, stored)
            _check(stored, sha256, size)
            break
        except _UrlFailed:
            stored.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
            if not resumed:
                raise
            # the old .part may have come from another mirror or an older file: once more from byte 0
    if compressed:
        part.unlink()
    digest = sha256.lower() if sha256 else sha256_file(stored)
    os.replace(stored, dest)
    return digest


def _check(path: Path, sha256, size):
    got = path.stat().st_size
    if size is not None and got != size:
        raise _WrongFile(f"got {got} bytes, expected {size}")
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256.lower():
            raise _WrongFile(f"sha256 mismatch: got {digest}, expected {sha256.lower()}")


def _decompress_bz2(part: Path, out: Path):
    try:
        with bz2.open(part, "rb") as src, open(out, "wb") as dst:
            for block in iter(lambda: src.read(CHUNK), b""):
                dst.write(block)
    except (OSError, EOFError) as err:
        raise _WrongFile(f"not valid bz2 data ({err})")


def _fetch_with_retries(session, url, part: Path, retry: Retry, progress: bool, label: str):
    last = None
    for attempt in range(retry.attempts):
        if attempt:
            time.sleep(retry.backoff * 2 ** (attempt - 1))
        try:
            return _fetch(session, url, part, retry.timeout, progress, label)
        except _Transient as err:
            last = err
    raise _UrlFailed(f"{last}; gave up after {retry.attempts} attempt{'s' if retry.attempts > 1 else ''}")


def _fetch(session, url, part: Path, timeout: float, progress: bool, label: str):
    """One attempt: continue ``part`` from where it stops (HTTP Range), or rewrite it if the server won't."""
    offset = part.stat().st_size if part.exists() else 0
    with _open(session, url, {"Range": f"bytes={offset}-"} if offset else {}, timeout) as response:
        if response.status_code == 416:  # nothing left after offset: complete, or longer than the file
            total = _range_total(response.headers.get("Content-Range", ""))
            if total != offset:
                part.unlink()
                raise _Transient("server refused to resume; restarting from the beginning")
            return
        if response.status_code == 206:
            start, total = _range_start_total(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _Transient(f"server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        else:  # 200: the whole file again (no Range support, or nothing to resume)
            offset, mode = 0, "wb"
            total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
        written = offset
        show = progress and total is not None
        with progress_bar(total, label) if show else nullcontext() as bar:
            if show:
                bar.update(offset)
            try:
                with open(part, mode) as f:
                    for chunk in response.iter_content(NETWORK_CHUNK):
                        f.write(chunk)
                        written += len(chunk)
                        if show:
                            bar.update(len(chunk))
            except requests.RequestException as err:
                raise _Transient(f"connection lost after {written} bytes ({_reason(err)})")
    if total is not None and written != total:
        raise _Transient(f"connection closed after {written} of {total} bytes")


def _open(session, url, headers, timeout):
    """GET ``url``; walk through Google Drive's confirmation pages; sort failures into transient or final."""
    for _ in range(3):  # link -> virus-scan warning page -> file
        try:
            response = session.get(url, headers=headers, stream=True, timeout=timeout)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as err:
            raise _UrlFailed(f"invalid URL ({_reason(err)})")
        except requests.RequestException as err:
            raise _Transient(f"connection failed ({_reason(err)})")
        status = response.status_code
        is_page = response.headers.get("Content-Type", "").startswith("text/html")
        if not is_page and (status < 400 or status == 416):
            return response
        with response:
            page = _read_page(response) if is_page else ""
        if any(marker in page for marker in DRIVE_QUOTA_MARKERS):  # Drive sends these as 200, 403 or 429
            raise _UrlFailed("Google Drive quota exceeded: too many users have viewed or downloaded this file "
                             "recently; try again in up to 24 hours or use another mirror")
        if status >= 500 or status == 429:
            raise _Transient(f"HTTP {status} {response.reason}")
        if status >= 400:
            raise _UrlFailed(f"HTTP {status} {response.reason}")
        url = _drive_confirmed_url(response, page)
    raise _UrlFailed("still a web page after following Google Drive's confirmation")


def _read_page(response) -> str:
    data = b""
    try:
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) >= PAGE_LIMIT:
                break
    except requests.RequestException as err:
        raise _Transient(f"connection lost while reading a web page ({_reason(err)})")
    return data.decode(response.encoding or "utf-8", errors="replace")


class _PageParser(HTMLParser):
    """Collects what a Drive page offers: forms with their hidden inputs, links, error caption, title."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[dict, dict]] = []
        self.links: list[str] = []
        self.title = self.caption = ""
        self._text_target = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((attrs, {}))
        elif tag == "input" and self.forms and attrs.get("name") and attrs.get("type", "").lower() == "hidden":
            self.forms[-1][1][attrs["name"]] = attrs.get("value", "")
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "title" or "uc-error-subcaption" in attrs.get("class", ""):
            self._text_target = "title" if tag == "title" else "caption"

    def handle_endtag(self, tag):
        self._text_target = None

    def handle_data(self, data):
        if self._text_target:
            setattr(self, self._text_target, (getattr(self, self._text_target) + data).strip())


def _drive_confirmed_url(response, page: str) -> str:
    """The URL behind Drive's "can't scan this file for viruses" page, or why there is none."""
    parser = _PageParser()
    parser.feed(page)
    for attrs, fields in parser.forms:  # drive.usercontent.google.com: <form id="download-form"> + uuid
        if "confirm" in fields or attrs.get("id") == "download-form":
            action = urljoin(response.url, attrs.get("action") or response.url)
            return _with_query(action, fields)
    for href in parser.links:  # older drive.google.com pages: a link carrying confirm=TOKEN
        if "confirm=" in href:
            return urljoin(response.url, href)
    for name, value in response.cookies.items():  # oldest: the token only in a download_warning cookie
        if name.startswith("download_warning"):
            return _with_query(response.url, {"confirm": value})
    if parser.caption:
        raise _UrlFailed(f"Google Drive says: {parser.caption}")
    raise _UrlFailed(f"got a web page ({parser.title or 'untitled'!r}) instead of the file")


def _with_query(url: str, extra: dict) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | extra
    return urlunsplit(parts._replace(query=urlencode(query)))


def _range_start_total(content_range: str) -> tuple[int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if not match:
        raise _Transient(f"unreadable Content-Range {content_range!r}")
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _range_total(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
    return int(match[1]) if match else None


def _reason(err: Exception) -> str:
    """The innermost useful sentence of a requests/urllib3 error, on one line."""
    text = str(err).replace("\n", " ")
    inner = re.findall(r"\[Errno -?\d+\] [^'\")\]]+|Read timed out|Connection reset by peer|IncompleteRead\([^)]*\)",
                       text)
    return (inner[-1] if inner else text)[:200]
