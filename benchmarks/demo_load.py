"""Load test of `pulse demo`: many visitors at once on loopback, with good faces, whole photos, long searches and bad
uploads.

Starts `python -m pulse demo` on 127.0.0.1 (a free port; never another address) with a small queue and a short time
cap, then sends ``--rounds`` storms of ``--clients`` visitors at once through Gradio's HTTP queue API, as the page
does: upload the file, join the queue, read the session's event stream. Each visitor has a session and a file name of
its own, so every answer can be traced to its request; one turned away busy tries again after a pause, up to
``--retries`` times. Prints, per round and in all: requests accepted, busy replies (the queue was full), visitors
turned away on every try, uploads refused (over --max-upload), answers by kind, wrong answers, answers given twice,
requests never answered, latency percentiles, time-limit hits, the largest queue the server reported, and the
server's resident memory (now, and its peak VmHWM); then one more request must come back done. Bounded: a visitor
gives up after --client-timeout; the server is stopped at the end. Exit status 1 when a check fails.

    python benchmarks/demo_load.py [--clients 30] [--rounds 4] [--retries 3] [--queue-size 8] [--time-limit 15]

The short version, in the test suite: tests/test_demo.py runs one storm against the page in-process.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pulse.demo import EXAMPLES_DIR

RETRY_AFTER_S = (2.0, 8.0)  # a visitor turned away busy tries again after a pause drawn from this range
FACE, PHOTO = EXAMPLES_DIR / "astronaut_face_16px.png", EXAMPLES_DIR / "astronaut_photo_160x120.png"


@dataclass(frozen=True)
class Kind:
    """A kind of visitor: what it uploads, with which page settings, and the answer it must get."""

    name: str
    expect: str  # in the answer's status line: "done in" or the error's words; "" for a refusal at upload
    mode: str = "aligned LR face"
    method: str = "pulse"
    scale: int = 8
    samples: int = 1
    long: bool = False  # asks for the page's most work: only the time limit stops it


KINDS = {kind.name: kind for kind in (
    Kind("face", "done in"),
    Kind("face srresnet", "done in", method="srresnet"),
    Kind("photo", "done in", mode="whole photo", scale=4),
    Kind("long search", "over this demo's limit", samples=4, long=True),
    Kind("not an image", "not a readable image", mode="auto"),
    Kind("wrong shape", "is not square"),
    Kind("decompression bomb", "decompression bomb", mode="auto"),
    Kind("too large", ""),
)}


def write_upload(kind: str, path: Path, max_upload_mb: float) -> Path:
    """The file a visitor of ``kind`` uploads."""
    if kind in ("face", "face srresnet", "long search"):
        path.write_bytes(FACE.read_bytes())
    elif kind == "photo":
        path.write_bytes(PHOTO.read_bytes())
    elif kind == "not an image":
        path.write_text("not a picture\n")
    elif kind == "wrong shape":
        from PIL import Image

        Image.open(FACE).resize((24, 16)).save(path)
    elif kind == "decompression bomb":  # a valid PNG header declaring 40000 x 40000 pixels, without the bytes
        def chunk(tag, data):
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    elif kind == "too large":
        path.write_bytes(FACE.read_bytes() + os.urandom(int(max_upload_mb * 2**20) + 1024))  # the page counts MiB
    return path


@dataclass
class Visit:
    """One visitor's request and what became of it."""

    name: str  # the uploaded file's name, unique to the visitor
    kind: str
    outcome: str = "never answered"  # answered | busy (on every try) | refused at upload | never answered | failed
    busy_replies: int = 0  # tries turned away because the queue was full
    busy_reply_s: float = 0.0  # the slowest of those replies
    status: str = ""  # the answer's status line (HTML), or the refusal
    completions: int = 0  # process_completed messages for this request: must be 1 when accepted
    seconds: float = 0.0  # the accepted join to its answer
    waited: float | None = None  # join to the start of its processing
    queue_sizes: list[int] = field(default_factory=list)  # queue lengths the server reported to this visitor

    @property
    def right(self) -> bool:
        """Whether the answer is the one its kind must get, naming its own upload where the page names one."""
        kind = KINDS[self.kind]
        if self.outcome != "answered" or kind.expect not in self.status:
            return False
        return kind.long or self.name in self.status


def run_fn_index(url: str) -> int:
    """The page's "run" event, as the Gradio config numbers it."""
    config = httpx.get(f"{url}config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "run")


def visit(url: str, fn_index: int, path: Path, kind: str, steps: int, barrier: threading.Barrier, timeout: float,
          retries: int) -> Visit:
    """Upload, wait for the others (so that all join at once), join the queue (again after a pause, up to ``retries``
    times, while it is full) and read the answer off the stream."""
    api, session = f"{url}gradio_api/", uuid.uuid4().hex
    record = Visit(path.name, kind)
    k = KINDS[kind]
    with httpx.Client(timeout=httpx.Timeout(timeout)) as http:
        with open(path, "rb") as data:
            uploaded = http.post(f"{api}upload", files=[("files", (path.name, data))])
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError:
            pass  # a visitor that never got here: the others go on
        if uploaded.status_code != 200:
            record.outcome, record.status = "refused at upload", f"HTTP {uploaded.status_code}: {uploaded.text[:80]}"
            return record
        file = {"path": uploaded.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        generator = None  # the method's first network (a session's network list is the page's, not the API's)
        inputs = [file, k.mode, k.method, generator, k.scale, k.samples, 500 if k.long else steps, 0, "bicubic"]
        backoff = random.Random(path.name)
        for attempt in range(retries + 1):  # turned away busy: try again a little later, as a visitor would
            start = time.monotonic()
            joined = http.post(f"{api}queue/join", json={"data": inputs, "event_data": None, "fn_index": fn_index,
                                                          "trigger_id": None, "session_hash": session})
            if joined.status_code != 503:
                break
            record.busy_replies += 1
            record.busy_reply_s = max(record.busy_reply_s, time.monotonic() - start)
            record.status = joined.json().get("detail", "")
            if attempt < retries:
                time.sleep(backoff.uniform(*RETRY_AFTER_S))
        else:
            record.outcome = "busy"
            return record
        if joined.status_code != 200:
            record.outcome, record.status = "failed", f"join: HTTP {joined.status_code}: {joined.text[:200]}"
            return record
        event = joined.json()["event_id"]
        with http.stream("GET", f"{api}queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():  # heartbeats at least every 15 s: the deadline below is checked
                if time.monotonic() - start > timeout:
                    break
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "close_stream":
                    break
                if message.get("event_id") != event:
                    continue
                if message.get("queue_size") is not None:
                    record.queue_sizes.append(message["queue_size"])
                if message["msg"] == "process_starts":
                    record.waited = time.monotonic() - start
                elif message["msg"] == "process_completed":
                    record.completions += 1
                    record.seconds = time.monotonic() - start
                    output = message.get("output") or {}
                    record.outcome = "answered" if message.get("success") else "failed"
                    record.status = html.unescape((output.get("data") or [output.get("error", "")])[0] or "")
    return record


def storm(url: str, kinds: list[str], steps: int, folder: Path, max_upload_mb: float, timeout: float,
          tag: str = "", retries: int = 0) -> list[Visit]:
    """All visitors at once, one thread each; returns when every one is answered, refused or has given up."""
    fn_index = run_fn_index(url)
    paths = [write_upload(kind, folder / f"{tag}v{i:02d}_{kind.replace(' ', '_')}.png", max_upload_mb)
             for i, kind in enumerate(kinds)]
    barrier = threading.Barrier(len(kinds))
    visits: list[Visit | None] = [None] * len(kinds)

    def one(i: int) -> None:
        try:
            visits[i] = visit(url, fn_index, paths[i], kinds[i], steps, barrier, timeout, retries)
        except httpx.HTTPError as err:  # a connection the server dropped or never answered
            visits[i] = Visit(paths[i].name, kinds[i], "failed", f"{type(err).__name__}: {err}")
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(kinds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 30)
    return [v or Visit(p.name, k, "never answered") for v, p, k in zip(visits, paths, kinds)]


def mix(clients: int, seed: int) -> list[str]:
    """Visitor kinds for a storm: every kind, then at random (half of them good faces and photos)."""
    good, bad = ["face", "face srresnet", "photo"], [k for k in KINDS if k not in ("face", "face srresnet", "photo")]
    rng = random.Random(seed)
    kinds = (good + bad)[:clients] + [rng.choice(good if rng.random() < 0.5 else bad)
                                     for _ in range(clients - len(KINDS))]
    rng.shuffle(kinds)
    return kinds


def summarize(visits: list[Visit], queue_size: int) -> dict:
    """The numbers, and the checks that failed (empty: all held)."""
    answered = [v for v in visits if v.outcome == "answered"]
    accepted = [v for v in visits if v.outcome not in ("busy", "refused at upload")]
    latencies = sorted(v.seconds for v in answered)

    def percentile(q):  # nearest rank
        return round(latencies[max(0, math.ceil(q / 100 * len(latencies)) - 1)], 2) if latencies else None

    busy = [v for v in visits if v.outcome == "busy"]
    largest_queue = max((size for v in visits for size in v.queue_sizes), default=0)
    summary = {
        "clients": len(visits), "accepted": len(accepted), "busy_replies": sum(v.busy_replies for v in visits),
        "busy_on_every_try": len(busy),
        "refused_at_upload": sum(v.outcome == "refused at upload" for v in visits), "answered": len(answered),
        "answers_by_kind": dict(sorted(Counter(v.kind for v in answered).items())),
        "wrong_answers": [f"{v.name}: {v.outcome}: {v.status[:160]}" for v in answered if not v.right],
        "answered_twice": [v.name for v in visits if v.completions > 1],
        "never_answered": [v.name for v in accepted if v.outcome != "answered"],
        "time_limit_hits": sum("over this demo's limit" in v.status for v in answered),
        "latency_s": {"p50": percentile(50), "p90": percentile(90), "max": percentile(100)},
        "longest_wait_s": round(max((v.waited for v in answered if v.waited is not None), default=0), 2),
        "busy_reply_max_s": round(max((v.busy_reply_s for v in visits), default=0), 3),
        "largest_queue_reported": largest_queue,
    }
    checks = {
        "every accepted request answered": not summary["never_answered"],
        "no request answered twice": not summary["answered_twice"],
        "every answer the right one for its request": not summary["wrong_answers"],
        f"queue never longer than {queue_size}": largest_queue <= queue_size,
        "uploads over the limit refused at upload": all(v.outcome == "refused at upload" for v in visits
                                                        if v.kind == "too large"),
        "nothing else refused at upload": all(v.outcome != "refused at upload" for v in visits
                                              if v.kind != "too large"),
    }
    summary["failed_checks"] = [name for name, held in checks.items() if not held]
    return summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_kb(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def start_server(port: int, folder: Path, options: list[str], start_timeout: float) -> subprocess.Popen:
    """`pulse demo` with ``options`` on 127.0.0.1 only, its log in ``folder``; returns once the page answers, or
    stops it and raises with the log."""
    env = dict(os.environ, GRADIO_TEMP_DIR=str(folder / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "pulse", "demo", "--host", "127.0.0.1", "--port", str(port),
                                   *options], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return server
        except OSError:
            time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"pulse demo exited ({server.returncode}) or did not answer within {start_timeout:g} s:\n"
                       f"{(folder / 'server.log').read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    """Ctrl-C, then kill."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def print_round(title: str, summary: dict, memory: dict[str, int]) -> None:
    print(f"\n## {title}")
    for key, value in summary.items():
        print(f"{key}: {value}")
    print(f"server memory: RSS {memory['VmRSS'] / 1024:.0f} MiB now, peak {memory['VmHWM'] / 1024:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30, help="visitors per storm, all at once")
    parser.add_argument("--rounds", type=int, default=4, help="storms, one after the other")
    parser.add_argument("--queue-size", type=int, default=8, help="the server's --queue-size")
    parser.add_argument("--time-limit", type=float, default=15.0, help="the server's --time-limit, s")
    parser.add_argument("--max-upload", type=float, default=1.0, help="the server's --max-upload, MB")
    parser.add_argument("--steps", type=int, default=20, help="search steps of the good requests")
    parser.add_argument("--retries", type=int, default=3, help="tries again when turned away busy, at most")
    parser.add_argument("--client-timeout", type=float, default=600.0, help="a visitor gives up after this, s")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds the server may take to start")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"# pulse demo under load: {args.clients} visitors at once x {args.rounds} rounds, queue {args.queue_size}, "
          f"time limit {args.time_limit:g} s, max upload {args.max_upload:g} MB, {args.steps} steps, {args.device}; "
          f"{cpu}, {os.cpu_count()} cores")
    failed = []
    with tempfile.TemporaryDirectory(prefix="pulse-demo-load-") as tmp:
        folder = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        started = time.monotonic()
        options = ["--device", args.device, "--time-limit", str(args.time_limit), "--queue-size", str(args.queue_size),
                   "--max-upload", str(args.max_upload)]
        server = start_server(port, folder, options, args.start_timeout)
        try:
            print(f"server up in {time.monotonic() - started:.1f} s, pid {server.pid}")
            warm = storm(url, ["face"], args.steps, folder, args.max_upload, args.client_timeout, "warmup_")
            print(f"warm-up request: {warm[0].outcome} in {warm[0].seconds:.1f} s; server memory "
                  f"RSS {memory_kb(server.pid)['VmRSS'] / 1024:.0f} MiB")
            every = []
            for r in range(args.rounds):
                t0 = time.monotonic()
                visits = storm(url, mix(args.clients, args.seed + r), args.steps, folder, args.max_upload,
                               args.client_timeout, f"r{r}_", args.retries)
                summary = summarize(visits, args.queue_size)
                print_round(f"round {r + 1}: {time.monotonic() - t0:.1f} s", summary, memory_kb(server.pid))
                failed += summary["failed_checks"]
                every += visits
            after = storm(url, ["face"], args.steps, folder, args.max_upload, args.client_timeout, "after_")[0]
            still_serves = after.outcome == "answered" and after.right
            print(f"\nafter the storms: {after.outcome} in {after.seconds:.1f} s: "
                  f"{'the server still serves' if still_serves else after.status[:200]}")
            failed += [] if still_serves else ["the server still serves after the storms"]
            total = summarize(every, args.queue_size)
            print_round(f"all {args.rounds} rounds", total, memory_kb(server.pid))
            print(f"\nserver peak RSS (VmHWM): {memory_kb(server.pid)['VmHWM'] / 1024:.0f} MiB; "
                  f"whole run {time.monotonic() - started:.0f} s")
        finally:
            stop_server(server)
    print("all checks held" if not failed else f"FAILED: {sorted(set(failed))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
