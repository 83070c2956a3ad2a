"""`pulse demo`: a page on localhost to try pulse on one photo or one aligned LR face.

The work is the library's: ``Upsampler.run`` (or a feed-forward method's ``FeedForwardUpsampler.run``) for an aligned
face, ``faces.restore.restore`` for a whole photo.
This module turns one upload and the page's settings into what the page shows (captioned pictures, a summary, a
zip of the images and a JSON report) and keeps a shared machine alive: uploads pass the CLI's checks and their
one-line ``PulseError`` messages are what the page says; a search stops at a time cap; the page runs one search
at a time behind a queue it shows. A visitor with nothing to upload clicks one of ``EXAMPLES`` (package data in
``demo_examples/``, so an installed wheel has them). ``Demo`` knows nothing of the web (tests drive it directly);
``serve`` builds the Gradio page around it and imports Gradio only then, so the rest of pulse never loads it.
"""

from __future__ import annotations

import ctypes
import hashlib
import html
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from PIL import Image

from .api import open_upsampler
from .depixelize import MAX_BLOCK, Mosaic, find_mosaic, reduce_mosaic
from .errors import PulseError
from .evaluation.metrics import psnr
from .faces.detect import require_models
from .faces.restore import lr_size_for, restore
from .imageio import image_bytes, load_image, pil_to_tensor, tensor_to_pil
from .inputs import check_lr_size
from .output_folder import file_sha256
from .resample import KERNELS, resize
from .search import SearchOptions
from .upsampling import Result
from .weights.registry import DEFAULT_GENERATOR, GENERATOR_KINDS, load_registry
from .weights.resolve import is_installed
from .weights.store import resolve_cache_dir

METHODS = ("pulse", "srresnet", "srgan")  # feed-forward ones where their network is installed; no samples, no steps
MODES = {"auto": "auto", "aligned LR face": "face", "whole photo": "photo"}  # page label -> mode
MODE_LABELS = {mode: label for label, mode in MODES.items()}
MAX_SAMPLES, MAX_STEPS, MAX_SCALE = 4, 500, 32  # the page's bounds, checked again for requests made without it
PHOTO_SHOWN = 1536  # longest side of the before/after pair on the page (the zip has the full photo)
INVENTED = ("The face is invented: pulse makes up a plausible face that downscales to your input; it does not "
            "recover the person. Never use it to identify anyone or as evidence.")
DEMO_EXTRA = 'pip install "pulse[demo]"'
EXAMPLES_DIR = Path(__file__).with_name("demo_examples")  # package data, so a wheel's demo has them too
MALLOC_ARENAS = 2  # glibc's malloc arenas the server's threads share (MALLOC_ARENA_MAX in the environment wins)


@dataclass(frozen=True)
class Settings:
    """One request's choices, as the page offers them."""

    mode: str = "auto"  # "auto": an upload that is square and no larger than the generator is an aligned face
    method: str = "pulse"
    generator: str | None = None  # None: the demo's default
    scale: int = 8
    samples: int = 1  # aligned faces only (a photo's faces get one each)
    steps: int | None = None  # None: the generator's recommended
    seed: int = 0
    degradation: str = "bicubic"  # how the upload's LR was made (the search's operator); a mosaic is found by itself


@dataclass(frozen=True)
class Limits:
    """What keeps a shared machine alive."""

    time_limit: float = 300.0  # seconds of work per request
    queue_size: int = 8  # requests that may wait behind the running one
    max_upload_mb: float = 20.0


@dataclass(frozen=True)
class Example:
    """One click on the page: a shipped picture, the settings it runs with, and the caption saying what it is."""

    file: str  # in EXAMPLES_DIR
    caption: str
    settings: Settings

    @property
    def path(self) -> Path:
        return EXAMPLES_DIR / self.file


EXAMPLES = (  # public domain: scikit-image's astronaut photo (see demo_examples/README.md)
    Example("astronaut_face_16px.png", "Astronaut, aligned 16 px face: pulse ×8", Settings(mode="face")),
    Example("astronaut_face_16px.png", "Same face, 3 pulse samples: each downscales to it",
            Settings(mode="face", samples=3)),
    Example("astronaut_face_16px.png", "Same face, srresnet: one network pass, no search",
            Settings(mode="face", method="srresnet")),
    Example("astronaut_photo_160x120.png", "Astronaut photo 160×120: face found, restored ×4",
            Settings(mode="photo", scale=4)),
)


@dataclass
class Outcome:
    """What one request gives the page: a one-line error, or captioned pictures, a summary and the download."""

    name: str  # the upload's file name
    error: str | None = None
    eps: float | None = None  # the LR MSE a result must reach to count as consistent
    tiles: list[tuple[Image.Image, str]] = field(default_factory=list)  # per face: LR | bicubic | each sample
    rows: list[tuple[str, float, bool]] = field(default_factory=list)  # (label, LR-PSNR dB, within eps)
    photo: tuple[Image.Image, Image.Image] | None = None  # bicubic, restored (whole photos), display size
    report: dict | None = None
    download: Path | None = None
    notes: list[str] = field(default_factory=list)  # the library's warnings
    seconds: float = 0.0


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name other than localhost counts as reachable)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def within_eps(success: bool) -> str:
    return "within eps ✓" if success else "not within eps ✗"


class Demo:
    """The page's work, without the page: opens the generator, runs a request, writes its download.

    One request at a time (the page's queue sees to that); the last opened method and generator stay loaded.
    """

    def __init__(self, generator: str | None = None, device: str = "auto", time_limit: float = Limits.time_limit):
        self.default_generator = str(generator or DEFAULT_GENERATOR)
        self.device, self.time_limit = device, time_limit
        self.workdir = Path(tempfile.mkdtemp(prefix="pulse-demo-"))  # the latest request's zip
        self._opened: tuple[tuple, object] | None = None  # (method, network, scale), its upsampler
        self._generator_sha: dict[str, str] = {}
        self._steps: dict[tuple, int] = {}  # recommended search steps by (generator name, scale)
        self.upsampler("pulse", self.default_generator)  # a missing generator stops `pulse demo` before it serves

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def generators(self, method: str = "pulse", scale: int | None = None) -> list[str]:
        """The method's installed networks (nothing is downloaded from the page): for pulse the default generator,
        then the registry's other installed ones (any scale); for srresnet and srgan the installed SR models of
        that kind, of ``scale`` when given (a feed-forward network enlarges by its own scale only), those for clean
        inputs first: the first is the one a request gets unless it names another."""
        cache = resolve_cache_dir()
        kinds = GENERATOR_KINDS if method == "pulse" else ("sr-model",)
        installed = [m for m in load_registry().values() if m.kind in kinds and is_installed(m, cache)
                     and (method == "pulse" or m.method == method and scale in (None, m.scale))]
        if method != "pulse":
            return [m.name for m in sorted(installed, key=lambda m: m.chosen_by_name_only)]
        return [self.default_generator] + [m.name for m in installed if m.name != self.default_generator]

    def recommended_steps(self, generator: str | None = None, scale: int = 8) -> int:
        """The search steps recommended for a generator at ``scale``: its installed encoder's (searches start from
        it), else the generator file's, else the reference's: the page's default. Read once per generator and scale
        (the files are loaded whole)."""
        from .models.generator_file import read_generator_file
        from .weights.download import sha256_file
        from .weights.resolve import open_encoder, resolve_generator

        key = (generator or self.default_generator, scale)
        if key not in self._steps:
            path = resolve_generator(key[0])
            steps = read_generator_file(path)["metadata"].get("search_defaults", {}).get("steps", SearchOptions.steps)
            encoder = open_encoder(None, sha256_file(path), path.name, scale)
            self._steps[key] = int(steps if encoder is None else encoder.search_defaults.get("steps", steps))
        return self._steps[key]

    def methods(self) -> list[str]:
        return [method for method in METHODS if self.generators(method)]

    def examples(self) -> list[Example]:
        """The shipped examples this server can run (a feed-forward one only where its network is installed)."""
        offered = self.methods()
        return [example for example in EXAMPLES if example.settings.method in offered]

    def upsampler(self, method: str, generator: str, scale: int = 8):
        key = (method, generator, scale if method != "pulse" else None)
        if self._opened is None or self._opened[0] != key:
            self._opened = None  # the old one is freed before the new one loads
            self._opened = key, open_upsampler(method, generator, self.device, scale)
        return self._opened[1]

    def enhance(self, path, settings: Settings = Settings(),
                on_progress: Callable[[float, str], None] = lambda fraction, what: None) -> Outcome:
        """One upload through pulse. Every problem the user can fix comes back as ``Outcome.error``, one line."""
        started = time.monotonic()
        path = Path(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)  # what the library says to users, each time
            try:
                outcome = self._enhance(path, settings, started, on_progress)
            except PulseError as err:
                outcome = Outcome(path.name, error=str(err))
        # messages name the upload as the user knows it, not the server's copy
        local = lambda text: text.replace(str(path), path.name)  # noqa: E731
        outcome.error = outcome.error and local(outcome.error)
        said = (str(w.message) for w in caught if issubclass(w.category, UserWarning))
        outcome.notes = list(dict.fromkeys(local(message) for message in said))
        outcome.seconds = time.monotonic() - started
        return outcome

    def _enhance(self, path: Path, s: Settings, started: float, on_progress) -> Outcome:
        _check(s)
        offered = self.generators(s.method)
        if s.generator is None and s.method != "pulse":  # the network made for the scale
            for_scale = self.generators(s.method, s.scale)
            if not for_scale:
                scales = sorted({m.scale for m in load_registry().values() if m.name in offered})
                raise PulseError(f"no {s.method} network for ×{s.scale} is installed here (installed: "
                                 f"{', '.join(f'×{k}' for k in scales) or 'none'})")
        generator = s.generator or (self.default_generator if s.method == "pulse" else for_scale[0])
        if generator not in offered:
            raise PulseError(f"{s.method} network {generator!r} is not installed here (offered: "
                             f"{', '.join(offered) or 'none'})")
        on_progress(0, f"opening {generator}")
        upsampler = self.upsampler(s.method, generator, s.scale)
        if s.method != "pulse":
            upsampler.check_request(s.scale, s.samples, {})

        def on_step(step: int, total: int) -> None:
            if time.monotonic() - started > self.time_limit:
                raise PulseError(f"stopped at step {step}/{total}: over this demo's limit of {self.time_limit:g} s "
                                 "per request; try fewer steps or samples")
            on_progress(step / total, f"search step {step}/{total}")

        on_progress(0, "reading the upload")
        kind = {}

        def check_size(width: int, height: int) -> None:  # from the header, before any pixel is decoded
            kind["face"] = s.mode == "face" or (s.mode == "auto" and width == height <= upsampler.resolution)
            if kind["face"]:
                check_lr_size(width, height, upsampler.resolution, str(path))

        image = load_image(path, check_size=check_size)
        mosaic = self._mosaic(image, upsampler, s)
        if mosaic is not None:
            warnings.warn(f"{path}: {mosaic.reason}: searched as its {mosaic.grid.columns} px LR with the box "
                          f"operator, delivered at its own size (x{mosaic.grid.block})")
            s = replace(s, scale=mosaic.grid.block, degradation="box")
            return self._face(path, tensor_to_pil(mosaic.lr), upsampler, s, on_step,
                              self._made_with(upsampler, generator, s, s.samples))
        if kind["face"]:
            return self._face(path, image, upsampler, s, on_step, self._made_with(upsampler, generator, s, s.samples))
        on_progress(0, "finding faces")
        return self._photo(path, image, upsampler, s, on_step, self._made_with(upsampler, generator, s, 1))

    @staticmethod
    def _mosaic(image: Image.Image, upsampler, s: Settings) -> Mosaic | None:
        """A pixelated upload (a mosaic shown at full size), found as `pulse run --pixelated auto` finds it."""
        if s.method != "pulse" or s.mode == "photo" or max(image.size) > upsampler.resolution * MAX_BLOCK:
            return None
        found = find_mosaic(image, "auto")
        if found.grid is None or found.grid.columns != found.grid.rows or found.grid.columns > upsampler.resolution:
            return None
        return Mosaic(found.grid, reduce_mosaic(image, found.grid), found.reason)

    def _face(self, path: Path, lr: Image.Image, upsampler, s: Settings, on_step, made_with) -> Outcome:
        results = upsampler.run([lr], scale=s.scale, samples=s.samples, seed=s.seed, on_step=on_step,
                                **_search(s))[0]
        tiles, rows = _face_tiles(lr, results, s.scale, [s.method] if s.samples == 1 else
                                  [f"{s.method} #{r.sample}" for r in results])
        names = [f"{path.stem}.png"] if s.samples == 1 else [f"{path.stem}_{r.sample}.png" for r in results]
        files = {name: image_bytes(r.image) for name, r in zip(names, results)}
        input_sha = file_sha256(path)
        report = {"note": INVENTED, "method": s.method, "mode": "face", "generator": made_with["generator"],
                  "outputs": [{"input": path.name, "input_sha256": input_sha, "output": name, "status": "ok",
                               "sample": r.sample, "seed": r.seed, "lr_mse": r.lr_mse, "lr_psnr": round(r.lr_psnr, 3),
                               "success": r.success, "steps": r.steps, "best_step": r.best_step,
                               "seconds": round(r.seconds, 3), "sha256": hashlib.sha256(files[name]).hexdigest(),
                               "made_with": made_with}
                              for name, r in zip(names, results)]}
        return Outcome(path.name, eps=made_with["eps"], tiles=tiles, rows=rows, report=report,
                       download=self._zip(path.stem, files, report))

    def _photo(self, path: Path, photo: Image.Image, upsampler, s: Settings, on_step, made_with) -> Outcome:
        require_models("hog")
        restored = restore(photo, s.scale, upsampler, seed=s.seed, name=str(path), on_step=on_step, **_search(s))
        if not restored.faces:
            raise PulseError(f"{path}: no face found; upload a photo with a clear, roughly frontal face, or an "
                             "aligned LR face")
        tiles, rows, files = [], [], {f"{path.stem}.png": image_bytes(restored.image)}
        for k, face in enumerate(restored.faces, 1):
            t, r = _face_tiles(face.lr, [face.result], s.scale, [f"face {k}: {s.method}"], f"face {k}: ")
            tiles += t
            rows += r
            files[f"{path.stem}_face{k}.png"] = image_bytes(face.result.image)
        report = {"note": INVENTED, "method": s.method, "mode": "photo", "source": path.name,
                  "input_sha256": file_sha256(path), "scale": s.scale,
                  "lr_size": lr_size_for(upsampler.resolution, s.scale), "image": f"{path.stem}.png",
                  "faces": [{**face.report(), "output": f"{path.stem}_face{k}.png"}
                            for k, face in enumerate(restored.faces, 1)],
                  "made_with": made_with}
        shown = [restored.upscaled.copy(), restored.image.copy()]
        for picture in shown:
            picture.thumbnail((PHOTO_SHOWN, PHOTO_SHOWN))
        return Outcome(path.name, eps=made_with["eps"], tiles=tiles, rows=rows, photo=(shown[0], shown[1]),
                       report=report, download=self._zip(path.stem, files, report))

    def _made_with(self, upsampler, generator: str, s: Settings, samples: int) -> dict:
        """What decides the pixels, as `pulse run`'s report records it (plus the eps results are judged by)."""
        source = str(upsampler.model.source)
        if source not in self._generator_sha:
            self._generator_sha[source] = file_sha256(source) if Path(source).is_file() else source
        if s.method != "pulse":
            return {"method": s.method, "generator": generator, "model_sha256": self._generator_sha[source],
                    "scale": s.scale, "eps": SearchOptions.eps}
        search = asdict(upsampler.search_options(s.scale, **_search(s)))
        search.pop("frame_every")
        encoder = upsampler.encoder_for(s.scale) if search["init"] == "encoder" else None
        return {"method": s.method, "generator": generator, "generator_sha256": self._generator_sha[source],
                "scale": s.scale, "seed": s.seed, "samples": samples, "search": search, "eps": search["eps"],
                **({} if encoder is None else {"encoder": Path(encoder.source).name})}

    def _zip(self, stem: str, files: dict[str, bytes], report: dict) -> Path:
        """The download: the images and report.json. Only the latest request's zip is kept here (the page copies
        what it serves)."""
        for old in self.workdir.iterdir():
            old.unlink()
        path = self.workdir / f"{stem}_{report['method']}.zip"  # named by what made it
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
            archive.writestr("report.json", json.dumps(report, indent=1) + "\n")
        return path


def _search(s: Settings) -> dict:
    """The search's keywords for ``run``/``restore``: none for a method that does not search."""
    if s.method != "pulse":
        return {}
    return {"degradation": s.degradation, **({"steps": s.steps} if s.steps is not None else {})}


def _check(s: Settings) -> None:
    """The page's bounds, for requests that did not come through its widgets."""
    if s.mode not in MODES.values():
        raise PulseError(f"input kind must be one of {', '.join(MODES.values())}, got {s.mode!r}")
    if s.method not in METHODS:
        raise PulseError(f"method must be one of {', '.join(METHODS)}, got {s.method!r}")
    if s.degradation not in KERNELS:
        raise PulseError(f"LR operator must be one of {', '.join(KERNELS)}, got {s.degradation!r}")
    for name, value, low, high in (("scale", s.scale, 2, MAX_SCALE), ("samples", s.samples, 1, MAX_SAMPLES),
                                   ("steps", s.steps, 1, MAX_STEPS)):
        if value is None and name == "steps":
            continue
        if value != int(value) or not low <= value <= high:
            raise PulseError(f"{name} must be a whole number from {low} to {high}, got {value}")


def _face_tiles(lr: Image.Image, results: list[Result], scale: int, labels: list[str],
                prefix: str = "") -> tuple[list[tuple[Image.Image, str]], list[tuple[str, float, bool]]]:
    """One face's row: LR (nearest-enlarged) | bicubic | each result, all at the output size, captioned with
    their LR-PSNR (the output downscaled against the LR input) and, for results, ✓ if that is within eps."""
    size = results[0].image.width
    lr_t = pil_to_tensor(lr)
    bicubic = tensor_to_pil(resize(lr_t, size))
    bicubic_psnr = psnr(resize(pil_to_tensor(bicubic), lr.width), lr_t)
    tiles = [(lr.resize((size, size), Image.Resampling.NEAREST), f"{prefix}LR {lr.width} px"),
             (bicubic, f"{prefix}bicubic ×{scale:g}: {bicubic_psnr:.1f} dB")]
    tiles += [(r.image, f"{label}: {r.lr_psnr:.1f} dB {'✓' if r.success else '✗'}")
              for r, label in zip(results, labels)]
    return tiles, [(label, r.lr_psnr, r.success) for r, label in zip(results, labels)]


def summary_html(outcome: Outcome) -> str:
    """The status box: the error in one line, or a table of LR-PSNR and eps marks, the notes, and the warning."""
    if outcome.error:
        return f'<p class="pulse-error"><b>error:</b> {html.escape(outcome.error)}</p>'
    head = f"<tr><th>result</th><th>LR-PSNR: downscaled vs the input</th><th>LR MSE ≤ eps = {outcome.eps:g}</th></tr>"
    cells = "".join(f"<tr><td>{html.escape(label)}</td><td>{value:.2f} dB</td><td>{within_eps(ok)}</td></tr>"
                    for label, value, ok in outcome.rows)
    notes = "".join(f"<p>note: {html.escape(note)}</p>" for note in outcome.notes)
    return (f'<p class="pulse-done">{html.escape(outcome.name)}: done in {outcome.seconds:.1f} s</p>'
            f"<table>{head}{cells}</table>{notes}<p><i>{html.escape(INVENTED)}</i></p>")


def serve(host: str = "127.0.0.1", port: int = 7860, generator: str | None = None, device: str = "auto",
          limits: Limits = Limits(), on_ready: Callable[[str], None] = print) -> None:
    """Serve the page until Ctrl-C; ``on_ready(url)`` once it is listening."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (before gradio is imported)
    try:
        import gradio as gr
    except ImportError as err:
        raise PulseError(f"the demo needs Gradio ({err}): {DEMO_EXTRA}") from None
    bound_malloc_arenas()  # before Gradio starts its threads
    demo = Demo(generator, device, limits.time_limit)
    page = build_page(demo, limits, gr)
    try:
        on_ready(launch(page, limits, host, port))
        page.block_thread()
    finally:
        page.close()
        demo.close()


def launch(page, limits: Limits, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Start serving ``page`` behind its bounded queue, without blocking; its URL. (Tests serve the page this way.)"""
    page.queue(max_size=limits.queue_size, default_concurrency_limit=1)
    try:
        _, url, _ = page.launch(server_name=host, server_port=port, share=False, ssr_mode=False, quiet=True,
                                prevent_thread_lock=True, max_file_size=round(limits.max_upload_mb * 2**20),
                                footer_links=["gradio"])
    except OSError:  # Gradio says only that no port of its range was free
        raise PulseError(f"cannot serve on {host}:{port}: the port is taken or privileged, or the address is not "
                         "this machine's; choose another --port or --host") from None
    return url


def bound_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Make glibc share ``arenas`` malloc arenas among all threads (mallopt M_ARENA_MAX); whether it did.

    Gradio runs each request on any of its worker threads, and glibc gives every thread an arena of its own (up to 8
    per core) that keeps what the thread's tensors freed: without a bound, a busy server's memory grows storm after
    storm (benchmarks/demo_load.py). Only where the user has not set MALLOC_ARENA_MAX; nothing off glibc.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return ctypes.CDLL(None).mallopt(-8, arenas) == 1  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):  # a libc without mallopt
        return False


def build_page(demo: Demo, limits: Limits, gr):
    """The Gradio page: upload and settings on the left; status, pictures and download on the right."""
    def run(upload, mode, method, generator, scale, samples, steps, seed, degradation, progress=gr.Progress()):
        if upload is None:
            outcome = Outcome("", error="upload a photo or an aligned LR face first")
        else:
            settings = Settings(MODES.get(mode, mode), method, generator, int(scale), int(samples), int(steps),
                                int(seed or 0), degradation or "bicubic")
            outcome = demo.enhance(upload, settings, lambda fraction, what: progress(fraction, desc=what))
        return (summary_html(outcome), outcome.tiles or None,
                gr.ImageSlider(value=outcome.photo, visible=outcome.photo is not None),
                outcome.download and str(outcome.download), outcome.report)

    with gr.Blocks(title="pulse demo", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("## pulse: face super-resolution by latent-space search\n"
                    f"**{INVENTED}**\n\n"
                    f"One search at a time (up to {limits.queue_size} waiting); each stops after "
                    f"{limits.time_limit:g} s; uploads up to {limits.max_upload_mb:g} MB.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Photo or aligned LR face (PNG, JPEG, WebP, BMP)", type="filepath",
                                 elem_id="pulse-upload")
                mode = gr.Radio(list(MODES), value="auto", label="Input is",
                                info="auto: square and at most the generator's size = an aligned face")
                with gr.Row():
                    method = gr.Dropdown(demo.methods(), value="pulse", label="Method",
                                         info="pulse: a search (several samples); srresnet, srgan: one pass")
                    generator = gr.Dropdown(demo.generators(), value=demo.default_generator, label="Network")
                scale = gr.Slider(2, MAX_SCALE, value=8, step=1, label="Scale",
                                  info="face: output = input × scale; photo: faces searched at generator size ÷ scale")
                samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples (aligned faces)")
                steps = gr.Slider(1, MAX_STEPS, value=demo.recommended_steps(), step=1, elem_id="pulse-steps",
                                  label="Search steps",
                                  info="default: what the generator recommends; where an encoder starts the "
                                       "search, the most a face may take (each stops once within eps)")
                seed = gr.Number(0, precision=0, label="Seed")
                degradation = gr.Dropdown(list(KERNELS), value="bicubic", label="LR made by",
                                          info="the downscale the search explains the upload with: bicubic (PULSE's), "
                                               "box (block averages), bilinear; a pixelated upload is found by itself")
                button = gr.Button("Upsample", variant="primary", elem_id="pulse-run")
                shipped = demo.examples()
                examples = gr.Examples(
                    [[str(e.path), MODE_LABELS[e.settings.mode], e.settings.method, e.settings.scale,
                      e.settings.samples, e.settings.steps or demo.recommended_steps(), e.settings.seed]
                     for e in shipped],
                    [upload, mode, method, scale, samples, steps, seed], label="Examples: one click runs one",
                    example_labels=[e.caption for e in shipped], elem_id="pulse-examples")
            with gr.Column(scale=2):
                status = gr.HTML(elem_id="pulse-status")
                gallery = gr.Gallery(label="LR | bicubic | result(s); captions: LR-PSNR, ✓ within eps", columns=3,
                                     height="auto", format="png", object_fit="contain", elem_id="pulse-results")
                photo = gr.ImageSlider(label="whole photo: bicubic | restored", visible=False, format="png")
                download = gr.File(label="Download: images and report.json", elem_id="pulse-download")
                with gr.Accordion("Report (JSON)", open=False):
                    report = gr.JSON()

        def offer_networks(chosen, times, reset_samples: bool):  # feed-forward: its networks, one sample, no steps
            searched = chosen == "pulse"
            names = demo.generators(chosen, None if searched else int(times))
            return (gr.Dropdown(choices=names, value=names[0] if names else None),
                    gr.Slider(value=1, visible=searched) if reset_samples else gr.Slider(visible=searched),
                    gr.Slider(value=demo.recommended_steps(names[0], int(times)) if searched and names else None,
                              visible=searched))

        inputs = [upload, mode, method, generator, scale, samples, steps, seed, degradation]
        outputs = [status, gallery, photo, download, report]
        # `input`, not `change`: an example sets the method and its samples itself, then runs, in one chain
        method.input(lambda chosen, times: offer_networks(chosen, times, True), [method, scale],
                     [generator, samples, steps])
        recommend = lambda chosen, name, times: (gr.Slider(value=demo.recommended_steps(name, int(times)))  # noqa: E731
                                                 if chosen == "pulse" else gr.Slider())
        generator.input(recommend, [method, generator, scale], steps)

        def follow_scale(chosen, name, times):  # a search's steps follow the scale; a network is made for one scale
            if chosen == "pulse":
                return gr.Dropdown(), recommend(chosen, name, times)
            networks, _, steps_slider = offer_networks(chosen, times, False)
            return networks, steps_slider

        scale.input(follow_scale, [method, generator, scale], [generator, steps])
        button.click(run, inputs, outputs, concurrency_limit=1, concurrency_id="search")
        examples.load_input_event.then(lambda chosen, times: offer_networks(chosen, times, False), [method, scale],
                                       [generator, samples, steps], queue=False).then(
            run, inputs, outputs, concurrency_limit=1, concurrency_id="search")
    return page
