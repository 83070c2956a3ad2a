"""`pulse demo`'s work without a browser: ``Demo.enhance`` on good and bad uploads, and the Gradio page's wiring
over HTTP (skipped only where the demo extra is not installed; the browser test is tests/test_demo_browser.py)."""

import dataclasses
import fnmatch
import hashlib
import io
import json
import platform
import struct
import tomllib
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from pulse.demo import (
    EXAMPLES,
    EXAMPLES_DIR,
    MAX_STEPS,
    Demo,
    Limits,
    Settings,
    bound_malloc_arenas,
    build_page,
    is_loopback,
    launch,
    summary_html,
)

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT_LR = ROOT / "examples" / "lr_faces" / "astronaut.png"
RUN_REPORT_FIELDS = {"input", "input_sha256", "output", "status", "sample", "seed", "lr_mse", "lr_psnr", "success",
                     "steps", "best_step", "seconds", "sha256", "made_with"}  # what `pulse run`'s report lines hold


@pytest.fixture(scope="module")
def demo():
    """The demo on the bundled 128 px generator, as `pulse demo` starts it."""
    made = Demo(device="cpu")
    yield made
    made.close()


def png_bomb(path, side=40_000):
    """A valid PNG header declaring side x side pixels: a decompression bomb without the bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def assert_good(demo, path=ASTRONAUT_LR, **settings):
    outcome = demo.enhance(path, Settings(**{"steps": 2, **settings}))
    assert outcome.error is None, outcome.error
    return outcome


def test_the_page_searches_with_the_generators_recommended_steps_unless_told(tmp_path):
    from pulse.models.encoder import load_encoder
    from pulse.models.generator_file import read_generator_file
    from pulse.weights.resolve import resolve_file, resolve_generator

    payload = read_generator_file(resolve_generator("pulse-faces-128"))
    payload["metadata"]["search_defaults"] = {"steps": 3}
    torch.save(payload, tmp_path / "three.pt")
    made = Demo(str(tmp_path / "three.pt"), device="cpu")
    try:
        bundled_encoder = load_encoder(resolve_file("pulse-encoder-x8"))  # starts the bundled generator's searches
        assert made.recommended_steps() == 3  # no encoder belongs to this file: the generator's own
        assert made.recommended_steps("pulse-faces-128") == bundled_encoder.search_defaults["steps"] < 100
        x4_encoder = load_encoder(resolve_file("pulse-encoder-x4"))
        assert made.recommended_steps("pulse-faces-128", scale=4) == x4_encoder.search_defaults["steps"]
        assert made.recommended_steps("pulse-faces-128", scale=2) == 100  # no encoder at x2: the generator's own
        line = made.enhance(ASTRONAUT_LR, Settings()).report["outputs"][0]
        assert line["steps"] == 3 and line["made_with"]["search"]["steps"] == 3
        assert made.enhance(ASTRONAUT_LR, Settings(steps=2)).report["outputs"][0]["steps"] == 2
    finally:
        made.close()


def test_a_pixelated_upload_is_found_reduced_and_searched_with_the_box_operator(demo, tmp_path):
    mosaic = tmp_path / "mosaic.png"
    Image.open(ASTRONAUT_LR).resize((128, 128), Image.Resampling.NEAREST).save(mosaic)  # 8 px blocks of the 16 px LR
    outcome = assert_good(demo, mosaic)
    assert any("mosaic of 8 px blocks" in note and "box operator" in note for note in outcome.notes), outcome.notes
    line = outcome.report["outputs"][0]
    assert line["made_with"]["search"]["degradation"] == "box" and line["made_with"]["scale"] == 8
    assert [image.size for image, _ in outcome.tiles] == [(128, 128)] * 3  # delivered at the mosaic's own size
    plain = assert_good(demo, ASTRONAUT_LR, degradation="bilinear")  # an ordinary LR: the operator asked for
    assert plain.report["outputs"][0]["made_with"]["search"]["degradation"] == "bilinear" and not plain.notes


def test_an_aligned_face_gives_captioned_results_a_summary_and_a_zip_with_the_report(demo):
    progress = []
    outcome = demo.enhance(ASTRONAUT_LR, Settings(samples=2, steps=5, seed=3),
                           lambda fraction, what: progress.append((fraction, what)))
    assert outcome.error is None, outcome.error
    assert progress[-1] == (1.0, "search step 5/5")
    assert [image.size for image, _ in outcome.tiles] == [(128, 128)] * 4  # LR | bicubic | 2 samples
    captions = [caption for _, caption in outcome.tiles]
    assert captions[:2] == ["LR 16 px", captions[1]] and captions[1].startswith("bicubic ×8: ")
    for caption, (label, psnr, success) in zip(captions[2:], outcome.rows):
        assert caption == f"{label}: {psnr:.1f} dB {'✓' if success else '✗'}"
    assert [label for label, _, _ in outcome.rows] == ["pulse #0", "pulse #1"]

    summary = summary_html(outcome)
    assert summary.startswith('<p class="pulse-done">astronaut.png: done in ')
    assert f"{outcome.rows[0][1]:.2f} dB" in summary and "eps = 0.002" in summary
    assert "within eps" in summary and "never" in summary.lower()  # the invented-face warning

    with zipfile.ZipFile(outcome.download) as archive:
        assert sorted(archive.namelist()) == ["astronaut_0.png", "astronaut_1.png", "report.json"]
        report = json.loads(archive.read("report.json"))
        assert report == outcome.report and report["method"] == "pulse" and report["mode"] == "face"
        for entry, (image, _), sample in zip(report["outputs"], outcome.tiles[2:], (0, 1)):
            assert RUN_REPORT_FIELDS <= set(entry)
            data = archive.read(entry["output"])
            assert hashlib.sha256(data).digest().hex() == entry["sha256"]
            assert Image.open(io.BytesIO(data)).size == (128, 128) and Image.open(io.BytesIO(data)).tobytes() == \
                image.tobytes()
            assert entry["sample"] == sample and entry["seed"] == 3 + sample and entry["steps"] == 5
            assert entry["made_with"]["method"] == "pulse" and entry["made_with"]["search"]["steps"] == 5
            assert entry["input"] == "astronaut.png" and entry["made_with"]["generator"] == "pulse-faces-128"


@pytest.mark.parametrize("method, networks", [("srresnet", ["pulse-sr-x8", "pulse-sr-x8-degraded"]),
                                               ("srgan", ["pulse-srgan-x8"])])
def test_each_feedforward_method_is_offered_with_its_own_network_and_gives_one_result(demo, method, networks):
    """The method's networks for the scale, the one for clean inputs first: what a request gets by default."""
    assert demo.methods() == ["pulse", "srresnet", "srgan"] and demo.generators(method, 8) == networks
    network = networks[0]
    outcome = assert_good(demo, method=method)
    assert [caption.split(":")[0] for _, caption in outcome.tiles] == ["LR 16 px", "bicubic ×8", method]
    assert [image.size for image, _ in outcome.tiles] == [(128, 128)] * 3
    (entry,) = outcome.report["outputs"]
    assert outcome.report["method"] == method and entry["steps"] == 0 and RUN_REPORT_FIELDS <= set(entry)
    assert outcome.download.name == f"astronaut_{method}.zip"  # named by the method that made it
    assert entry["made_with"]["method"] == method and entry["made_with"]["generator"] == network
    again = assert_good(demo, method=method, seed=5)  # deterministic: the seed changes nothing
    assert again.tiles[2][0].tobytes() == outcome.tiles[2][0].tobytes()


@pytest.mark.parametrize("method", ["srresnet", "srgan"])
def test_a_feedforward_method_takes_the_network_made_for_the_scale(demo, method, tmp_path):
    kind = "sr" if method == "srresnet" else "srgan"
    degraded = ["pulse-sr-x8-degraded", "pulse-sr-x4-degraded"] if method == "srresnet" else []
    assert demo.generators(method) == [f"pulse-{kind}-x{k}" for k in (8, 4)] + degraded
    face32 = tmp_path / "face32.png"
    Image.open(ASTRONAUT_LR).resize((32, 32), Image.BICUBIC).save(face32)
    outcome = assert_good(demo, face32, method=method, scale=4)  # no network named: the scale's
    (entry,) = outcome.report["outputs"]
    assert entry["made_with"]["generator"] == demo.generators(method, 4)[0] == f"pulse-{kind}-x4"
    assert outcome.tiles[2][0].size == (128, 128)
    refused = demo.enhance(face32, Settings(method=method, scale=3))
    assert refused.error == f"no {method} network for ×3 is installed here (installed: ×4, ×8)"


def test_the_network_for_degraded_inputs_is_offered_and_runs_when_named(demo):
    outcome = assert_good(demo, method="srresnet", generator="pulse-sr-x8-degraded")
    (entry,) = outcome.report["outputs"]
    assert entry["made_with"]["generator"] == "pulse-sr-x8-degraded" and outcome.tiles[2][0].size == (128, 128)
    default = assert_good(demo, method="srresnet")
    assert default.tiles[2][0].tobytes() != outcome.tiles[2][0].tobytes()


def test_the_two_bundled_networks_differ():
    import pulse

    srresnet, srgan = (pulse.upsample(ASTRONAUT_LR, method=m, device="cpu") for m in ("srresnet", "srgan"))
    assert srresnet.size == srgan.size == (128, 128) and srresnet.tobytes() != srgan.tobytes()


def bad_upload(tmp_path, kind, astronaut):
    """An upload that must fail, and the words its one-line message must hold."""
    path = tmp_path / {"text": "notes.txt", "corrupt": "face.png", "empty": "empty.png", "huge": "bomb.png",
                       "no face": "wall.png", "not square": "wide.png"}[kind]
    if kind == "text":
        path.write_text("not a picture\n")
    elif kind == "corrupt":
        path.write_bytes(ASTRONAUT_LR.read_bytes()[:300])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "huge":
        png_bomb(path)
    elif kind == "no face":
        Image.new("RGB", (300, 200), (110, 150, 190)).save(path)
    else:
        astronaut.resize((24, 16)).save(path)
    expected = {"text": "not a readable image", "corrupt": "not a readable image", "empty": "empty file",
                "huge": "decompression bomb", "no face": "no face found",
                "not square": "24x16 is not square"}[kind]
    return path, expected


@pytest.mark.parametrize("kind", ["text", "corrupt", "empty", "huge", "no face", "not square"])
def test_a_bad_upload_is_one_line_naming_the_file_and_the_next_request_works(demo, tmp_path, kind, astronaut):
    path, expected = bad_upload(tmp_path, kind, astronaut)
    mode = "face" if kind == "not square" else "auto"
    outcome = demo.enhance(path, Settings(mode=mode, steps=2))
    assert outcome.error is not None and "\n" not in outcome.error
    assert outcome.error.startswith(f"{path.name}: ") and expected in outcome.error, outcome.error
    assert str(tmp_path) not in outcome.error  # the server's copy of the upload is not the user's business
    assert not outcome.tiles and outcome.download is None
    assert summary_html(outcome).startswith('<p class="pulse-error"><b>error:</b> ')
    assert_good(demo)


@pytest.mark.parametrize("settings, message", [
    (dict(steps=0), "steps must be a whole number from 1 to"),
    (dict(steps=MAX_STEPS + 1), f"steps must be a whole number from 1 to {MAX_STEPS}"),
    (dict(samples=9), "samples must be a whole number from 1 to 4"),
    (dict(scale=1), "scale must be a whole number from 2 to 32"),
    (dict(method="magic"), "method must be one of pulse"),
    (dict(mode="video"), "input kind must be one of auto, face, photo"),
    (dict(generator="ffhq-1024"), "pulse network 'ffhq-1024' is not installed here"),
    (dict(method="srresnet", samples=2), "samples 2: srresnet is deterministic"),
    (dict(method="srresnet", generator="pulse-sr-x8", scale=4), "enlarges x8 only, not x4"),
    (dict(method="srresnet", generator="pulse-faces-128"), "srresnet network 'pulse-faces-128' is not installed here"),
])
def test_settings_outside_the_pages_bounds_are_refused(demo, settings, message):
    outcome = demo.enhance(ASTRONAUT_LR, Settings(**settings))
    assert outcome.error is not None and message in outcome.error, outcome.error


def test_a_search_past_the_time_limit_stops_with_a_message_and_the_next_one_runs(demo, monkeypatch):
    monkeypatch.setattr(demo, "time_limit", 0.0)
    outcome = demo.enhance(ASTRONAUT_LR, Settings(steps=50))
    assert outcome.error == ("stopped at step 1/50: over this demo's limit of 0 s per request; try fewer steps or "
                             "samples")
    monkeypatch.undo()
    assert_good(demo)


def test_a_whole_photo_is_restored_with_its_face_tiles_and_before_after(demo, astronaut, tmp_path):
    path = tmp_path / "portrait.jpg"
    astronaut.resize((256, 256), Image.Resampling.BICUBIC).save(path, quality=95)
    outcome = assert_good(demo, path, scale=4, steps=3, samples=3)  # samples: aligned faces only
    captions = [caption for _, caption in outcome.tiles]
    assert captions[0] == "face 1: LR 32 px" and captions[1].startswith("face 1: bicubic ×4: ")
    mark = "✓" if outcome.rows[0][2] else "✗"
    assert captions[2].startswith("face 1: pulse: ") and captions[2].endswith(f" dB {mark}")
    assert [image.size for image in outcome.photo] == [(1024, 1024)] * 2
    report = outcome.report
    assert report["mode"] == "photo" and report["lr_size"] == 32 and len(report["faces"]) == 1
    assert report["made_with"]["samples"] == 1 and {"lr_psnr", "success", "quad", "output"} <= set(report["faces"][0])
    with zipfile.ZipFile(outcome.download) as archive:
        assert sorted(archive.namelist()) == ["portrait.png", "portrait_face1.png", "report.json"]
        assert Image.open(io.BytesIO(archive.read("portrait.png"))).size == (1024, 1024)


def test_every_shipped_example_runs_with_its_settings(demo):
    examples = demo.examples()
    assert [(e.settings.mode, e.settings.method, e.settings.samples) for e in examples] == [
        ("face", "pulse", 1), ("face", "pulse", 3), ("face", "srresnet", 1), ("photo", "pulse", 1)]
    for example in examples:
        outcome = demo.enhance(example.path, dataclasses.replace(example.settings, steps=2))
        assert outcome.error is None, (example.caption, outcome.error)
        if example.settings.mode == "face":
            assert len(outcome.tiles) == 2 + example.settings.samples and outcome.photo is None
            assert outcome.tiles[0][1] == "LR 16 px" and outcome.report["method"] == example.settings.method
        else:  # the photo's one face, found, restored and pasted back
            assert len(outcome.report["faces"]) == 1 and outcome.report["lr_size"] == 32
            assert outcome.photo[1].size == (640, 480)


def test_examples_are_offered_only_for_installed_methods(demo, monkeypatch):
    monkeypatch.setattr(demo, "methods", lambda: ["pulse"])
    assert {e.settings.method for e in demo.examples()} == {"pulse"} and len(demo.examples()) == 3


def test_the_examples_travel_in_the_wheel_as_package_data():
    """A wheel holds only what package-data names: each example must match it (the demo opens them from there)."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {e.path for e in EXAMPLES}
    assert shipped and all(path.is_file() and path.parent == EXAMPLES_DIR for path in shipped)
    for path in shipped:
        inside = path.relative_to(ROOT / "pulse").as_posix()
        assert any(fnmatch.fnmatch(inside, pattern) for pattern in package_data["pulse"]), inside


def test_the_server_bounds_glibcs_malloc_arenas_unless_the_user_has(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not bound_malloc_arenas()  # the user's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert bound_malloc_arenas() == (platform.libc_ver()[0] == "glibc")


def test_loopback_hosts():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.3.2.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "example.org"]))


def test_the_page_serves_results_and_messages_over_http_one_request_after_another(demo, demo_load, tmp_path,
                                                                                    monkeypatch):
    gr = pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
    from gradio_client import Client, handle_file

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(ASTRONAUT_LR.read_bytes()[:300])
    page = build_page(demo, Limits(queue_size=4), gr)
    url = launch(page, Limits(queue_size=4), port=demo_load.free_port())
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path / "got"))
        for upload, said in ((ASTRONAUT_LR, "astronaut.png: done in"), (corrupt, "corrupt.png: not a readable image"),
                             (ASTRONAUT_LR, "astronaut.png: done in")):
            status, gallery, _, download, report = client.predict(
                handle_file(str(upload)), "auto", "pulse", "pulse-faces-128", 8, 1, 2, 0, api_name="/run")
            assert said in status, status
            if "done" in said:
                assert len(gallery) == 3 and Image.open(gallery[2]["image"]).size == (128, 128)
                assert Path(download).name == "astronaut_pulse.zip" and report["outputs"][0]["steps"] == 2
            else:
                assert not gallery and download is None and report is None
    finally:
        page.close()


def test_under_a_storm_the_queue_holds_its_bound_every_accepted_request_is_answered_once_and_it_still_serves(
        demo, demo_load, tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    limits = Limits(queue_size=2, max_upload_mb=0.1)  # time limits: tested above, and under load by the benchmark
    page = build_page(demo, limits, gr)
    url = launch(page, limits, port=demo_load.free_port())
    try:
        kinds = ["face", "not an image", "face srresnet", "wrong shape", "photo", "decompression bomb", "too large",
                 "face", "face"]
        visits = demo_load.storm(url, kinds, 2, tmp_path, limits.max_upload_mb, timeout=120)
        summary = demo_load.summarize(visits, limits.queue_size)
        assert summary["failed_checks"] == [], summary["wrong_answers"]  # the queue held; each answered once, rightly
        assert summary["refused_at_upload"] == 1 and summary["busy_on_every_try"] >= 1, summary
        assert summary["accepted"] + summary["busy_on_every_try"] + summary["refused_at_upload"] == len(kinds)
        busy = [v for v in visits if v.outcome == "busy"]
        assert all("Queue is full" in v.status for v in busy) and summary["busy_reply_max_s"] < 10  # not a hang
        after = demo_load.storm(url, ["face"], 2, tmp_path, limits.max_upload_mb, timeout=120, tag="after_")[0]
        assert after.outcome == "answered" and after.right, after
    finally:
        page.close()
