"""Weights by name: the registry (weights/registry.toml), the cache, verification, import, and the CLI.

``resolve_generator(spec)`` is what the rest of pulse calls: a path is returned as it is, a registry name
becomes a verified file (downloaded into the cache when the registry says where from). Nothing is trusted
without a sha256 (from the registry, or pinned when the user accepted the file), nothing is unpickled, and a
file that fails its check is deleted from the cache rather than used. ``python -m pulse.weights`` = ``pulse weights``.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import os
import re
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from .download import DownloadFailed, Retry, download, sha256_file
from .errors import PulseError
from .models import generator_config
from .models.stylegan1 import Generator, GeneratorConfig
from .models.generator_file import fit_progress, gaussian_fit, read_generator_file, save_generator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent downloads of one file are then the user's care
    fcntl = None

DEFAULT_GENERATOR = "pulse-faces-128"


def _weights_dir() -> Path:
    """A checkout's weights/ (clone, editable install), else the copy a wheel ships as pulse/_weights."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / "weights"
    return checkout if (checkout / "registry.toml").is_file() else package / "_weights"


WEIGHTS_DIR = _weights_dir()
REGISTRY_PATH = WEIGHTS_DIR / "registry.toml"
CACHE_ENV = "PULSE_CACHE"
KINDS = ("generator", "stylegan1-official", "landmarks")
GENERATOR_KINDS = ("generator", "stylegan1-official")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
DEFAULT_FIT_SAMPLES = 1_000_000


@dataclass(frozen=True)
class WeightsFile:
    name: str
    urls: tuple[str, ...] = ()
    path: str | None = None  # shipped in the repository, relative to its root
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Model:
    name: str
    kind: str
    resolution: int
    licence: str
    description: str
    files: tuple[WeightsFile, ...]
    alignment: str | None = None
    data: str | None = None

    @property
    def import_command(self) -> str:
        files = " ".join(f.name for f in self.files) if self.kind == "stylegan1-official" else "FILE"
        return f"`pulse weights import {self.name} {files}`"


# ---------------------------------------------------------------- registry

def load_registry(path=None) -> dict[str, Model]:
    """Parse and validate the registry; a malformed entry is an error naming it, never silently skipped."""
    path = Path(path or REGISTRY_PATH)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise PulseError(f"{path}: weights registry not found (pulse must be installed from its repository)")
    except tomllib.TOMLDecodeError as err:
        raise PulseError(f"{path}: not valid TOML ({err})")
    return {name: _parse_model(path, name, table) for name, table in raw.get("models", {}).items()}


def _parse_model(path: Path, name: str, table: dict) -> Model:
    where = f"{path}: model {name!r}"
    _check_name(name, where)
    table = dict(table)
    try:
        files = tuple(_parse_file(where, f) for f in table.pop("files"))
        model = Model(name=name, files=files, **table)
    except (KeyError, TypeError) as err:
        raise PulseError(f"{where}: missing or unknown field ({err})")
    if model.kind not in KINDS:
        raise PulseError(f"{where}: kind must be one of {', '.join(KINDS)}, not {model.kind!r}")
    if not files or (model.kind != "stylegan1-official" and len(files) != 1):
        raise PulseError(f"{where}: a {model.kind} entry has exactly one file, this one has {len(files)}")
    return model


def _parse_file(where: str, table: dict) -> WeightsFile:
    table = dict(table)
    sha = table.pop("sha256", "").lower() or None
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise PulseError(f"{where}: sha256 must be 64 hex digits or empty, got {sha!r}")
    wfile = WeightsFile(sha256=sha, size=table.pop("size", 0) or None,
                        urls=tuple(table.pop("urls", ())), **table)
    _check_name(wfile.name, where)
    if not wfile.urls and not wfile.path:
        raise PulseError(f"{where}: file {wfile.name} needs urls or a path")
    return wfile


def _check_name(name: str, where: str):
    if not NAME_PATTERN.fullmatch(name) or set(name) == {"."}:
        raise PulseError(f"{where}: {name!r} is not a valid name (letters, digits, '.', '_', '-'; not '..')")


def get_model(name: str) -> Model:
    models = load_registry()
    if name not in models:
        raise PulseError(f"{name}: not a weights name in the registry (known: {', '.join(models)})")
    return models[name]


# ---------------------------------------------------------------- cache

def resolve_cache_dir(cache_dir=None) -> Path:
    """--cache-dir, else $PULSE_CACHE, else ~/.cache/pulse."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pulse").expanduser()


def _inside(base: Path, *parts: str) -> Path:
    """base/parts, refusing anything that resolves outside base (names are validated too; this is the backstop)."""
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base.resolve()):
        raise PulseError(f"{'/'.join(parts)}: resolves outside {base}; refused")
    return path


def _cached(cache: Path, model: Model, filename: str) -> Path:
    return _inside(cache, model.name, filename)


def _shipped(wfile: WeightsFile) -> Path:
    return _inside(WEIGHTS_DIR, wfile.path)


def _converted(cache: Path, model: Model) -> Path:
    return _cached(cache, model, f"{model.name}.pt")


@contextmanager
def _locked(path: Path):
    """One pulse process at a time per cache file: the next one waits, then finds the finished file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                click.echo(f"waiting for another pulse process working on {path} ...", err=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_pin(path: Path) -> str | None:
    """The sha256 recorded when the user accepted a file the registry has no hash for (sha256sum format)."""
    try:
        return _pin_path(path).read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return None


def _pin(path: Path, digest: str):
    pin, tmp = _pin_path(path), path.with_name(f".{path.name}.sha256.{os.getpid()}.tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, pin)


def _discard(path: Path):
    path.unlink(missing_ok=True)
    _pin_path(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class FileStatus:
    model: str
    path: Path
    state: str  # "ok", "missing", "corrupt" (deleted when cached), "untrusted" (no sha256 to check against)
    detail: str = ""

    def __str__(self):
        return f"{self.model}: {self.path}: {self.state}" + (f" ({self.detail})" if self.detail else "")


def _check(model: Model, path: Path, sha256: str | None, size: int | None) -> FileStatus:
    if not path.is_file():
        return FileStatus(model.name, path, "missing")
    got = path.stat().st_size
    if size is not None and got != size:
        return FileStatus(model.name, path, "corrupt", f"{got} bytes, expected {size}")
    if sha256 is None:
        return FileStatus(model.name, path, "untrusted", "no sha256 in the registry and none pinned")
    digest = sha256_file(path)
    if digest != sha256:
        return FileStatus(model.name, path, "corrupt", f"sha256 {digest}, expected {sha256}")
    return FileStatus(model.name, path, "ok", f"sha256 {digest}")


def _check_cached(model: Model, path: Path, wfile: WeightsFile | None = None) -> FileStatus:
    """Check a cache file against the registry (or its pin) and delete it if it is corrupt. Hold its lock."""
    status = _check(model, path, (wfile and wfile.sha256) or _read_pin(path), wfile and wfile.size)
    if status.state == "corrupt":
        _discard(path)
        return FileStatus(model.name, path, "corrupt", status.detail + "; deleted")
    return status


def _check_shipped(model: Model, wfile: WeightsFile) -> FileStatus:
    status = _check(model, _shipped(wfile), wfile.sha256, wfile.size)
    if status.state == "untrusted":  # part of the checkout, like the code
        return FileStatus(model.name, status.path, "ok", "shipped with pulse; no sha256 recorded")
    return status


# ---------------------------------------------------------------- resolve

def resolve_generator(spec: str | os.PathLike, *, cache_dir=None) -> Path:
    """A generator file for ``spec``: an existing path as is, or a registry name's verified file.

    A downloadable name that is not cached is downloaded (and official checkpoints converted); every failure
    is a one-line ``PulseError`` saying what is missing and how to get it.
    """
    path = Path(spec)
    if path.is_file():
        return path
    models = load_registry()
    if isinstance(spec, os.PathLike) or str(spec) not in models:
        if isinstance(spec, os.PathLike) or os.sep in str(spec) or path.suffix:
            raise PulseError(f"{spec}: generator file not found")
        names = ", ".join(n for n, m in models.items() if m.kind in GENERATOR_KINDS)
        raise PulseError(f"{spec}: no such generator file or registry name (known generators: {names})")
    model = models[str(spec)]
    if model.kind not in GENERATOR_KINDS:
        raise PulseError(f"{model.name} is a {model.kind} file, not a generator")
    return _locate(model, resolve_cache_dir(cache_dir))


def installed_package_file(package: str, relative: str) -> Path | None:
    """A model file shipped inside an installed PyPI package, found without importing the package
    (face_recognition_models' __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.is_file():
            return path
    return None


def resolve_file(name: str, *, cache_dir=None) -> Path:
    """The verified local file of a single-file registry entry (e.g. the dlib predictor), downloading it if needed."""
    model = get_model(name)
    if len(model.files) != 1:
        raise PulseError(f"{name} has {len(model.files)} files; use resolve_generator({name!r})")
    return _locate(model, resolve_cache_dir(cache_dir))


def fetch(name: str, *, cache_dir=None, extra_urls: dict[str, list[str]] | None = None,
          trust_unverified: bool = False, retry: Retry = Retry(), progress: bool = True,
          fit_samples: int = DEFAULT_FIT_SAMPLES, device=None) -> Path:
    """Download what ``name`` lacks (``extra_urls[file]`` first, then the registry's mirrors); return its file.

    ``trust_unverified`` accepts files the registry has no sha256 for and pins the sha256 of what arrived.
    """
    model = get_model(name)
    unknown = set(extra_urls or ()) - {f.name for f in model.files}
    if unknown:
        raise PulseError(f"{name} has no file {', '.join(sorted(unknown))} (files: "
                         f"{', '.join(f.name for f in model.files)})")
    return _locate(model, resolve_cache_dir(cache_dir), extra_urls=extra_urls or {},
                   trust_unverified=trust_unverified, retry=retry, progress=progress,
                   fit_samples=fit_samples, device=device)


def _locate(model: Model, cache: Path, *, download_missing: bool = True, extra_urls: dict | None = None,
            trust_unverified: bool = False, retry: Retry = Retry(), progress: bool = True,
            fit_samples: int = DEFAULT_FIT_SAMPLES, device=None) -> Path:
    """The usable file of ``model``: shipped, cached, or (``download_missing``) downloaded/converted now."""
    get = dict(download_missing=download_missing, extra_urls=extra_urls or {},
               trust_unverified=trust_unverified, retry=retry, progress=progress)
    if model.kind != "stylegan1-official":
        return _locate_file(model, model.files[0], cache, **get)
    out = _converted(cache, model)
    flag = "" if all(f.sha256 for f in model.files) else " --no-verify"
    not_installed = f"{model.name} is not installed: run `pulse weights download {model.name}{flag}`"
    if not download_missing and not out.exists():
        raise PulseError(not_installed)
    with _locked(out):
        if _check_cached(model, out).state == "ok":
            return out
        if not download_missing:
            raise PulseError(not_installed)
        sources = [_locate_file(model, wfile, cache, **get) for wfile in model.files]
        for line in _convert_into(model, sources, out, fit_samples, device):
            click.echo(line, err=True)
    return out


def _installed(model: Model, cache: Path) -> bool:
    """Present where resolve would look (no hashing: `verify` does that)."""
    if model.kind == "stylegan1-official":
        return _converted(cache, model).is_file()
    wfile = model.files[0]
    return (bool(wfile.path) and _shipped(wfile).is_file()) or _cached(cache, model, wfile.name).is_file()


def _locate_file(model: Model, wfile: WeightsFile, cache: Path, *, download_missing: bool, extra_urls: dict,
                 trust_unverified: bool, retry: Retry, progress: bool) -> Path:
    if wfile.path:
        status = _check_shipped(model, wfile)
        if status.state == "corrupt":
            raise PulseError(f"{status.path}: corrupt ({status.detail}); restore it from the pulse repository")
        if status.state == "ok":
            return status.path
    target = _cached(cache, model, wfile.name)
    urls = [*extra_urls.get(wfile.name, ()), *wfile.urls]
    if not target.exists() and not (urls and download_missing):
        raise PulseError(_missing_message(model, wfile, target, downloadable=bool(urls)))
    with _locked(target):
        status = _check_cached(model, target, wfile)
        if status.state == "ok":
            return target
        if status.state == "corrupt":
            click.echo(f"{status}: downloading it again", err=True)
        if not urls or not download_missing:
            raise PulseError(_missing_message(model, wfile, target, downloadable=bool(urls)))
        if wfile.sha256 is None and not trust_unverified:
            raise PulseError(
                f"{model.name}: the registry has no sha256 for {wfile.name}, so pulse will not download it "
                f"unchecked: run `pulse weights download {model.name} --no-verify` to accept what the server "
                f"sends (its sha256 is then pinned), or place a copy you trust with {model.import_command}")
        try:
            digest = download(urls, target, sha256=wfile.sha256, size=wfile.size, retry=retry, progress=progress)
        except DownloadFailed as err:
            raise PulseError(f"{model.name}: {err}. Without network: fetch the file elsewhere and place it "
                             f"with {model.import_command}") from None
        if wfile.sha256 is None:
            _pin(target, digest)
        return target


def _missing_message(model: Model, wfile: WeightsFile, target: Path, downloadable: bool) -> str:
    if wfile.path and not downloadable:
        return (f"the bundled generator {model.name} is not installed (weights/{wfile.path} missing): pass "
                f"--generator PATH (a file made by `pulse train export`) or import one with {model.import_command}")
    if downloadable:
        flag = "" if wfile.sha256 else " --no-verify"
        return f"{model.name} is not installed ({target} missing): run `pulse weights download {model.name}{flag}`"
    return f"{model.name}: {wfile.name} is not installed and has no URL: place it with {model.import_command}"


# ---------------------------------------------------------------- verify

def verify(name: str | None = None, *, cache_dir=None) -> list[FileStatus]:
    """Re-hash every file of one model (or all); corrupt cached files are deleted so they get fetched again."""
    cache = resolve_cache_dir(cache_dir)
    models = [get_model(name)] if name else list(load_registry().values())
    statuses = []
    for model in models:
        if model.kind == "stylegan1-official":  # the converted file is what gets used; sources only if kept
            sources = [_verify_cached(model, _cached(cache, model, f.name), f) for f in model.files]
            statuses += [s for s in sources if s.state != "missing"]
            statuses.append(_verify_cached(model, _converted(cache, model)))
            continue
        wfile = model.files[0]
        status = _check_shipped(model, wfile) if wfile.path else None
        if status is None or status.state == "missing":
            cached = _verify_cached(model, _cached(cache, model, wfile.name), wfile)
            status = cached if status is None or cached.state != "missing" else status
        statuses.append(status)
    return statuses


def _verify_cached(model: Model, path: Path, wfile: WeightsFile | None = None) -> FileStatus:
    if not path.exists():
        return FileStatus(model.name, path, "missing")
    with _locked(path):
        return _check_cached(model, path, wfile)


# ---------------------------------------------------------------- import

def import_files(name: str, files, *, cache_dir=None, fit_samples: int = DEFAULT_FIT_SAMPLES,
                 device=None) -> list[str]:
    """Place user-supplied files into the cache as ``name``, checked like downloads; return what was done.

    Official StyleGAN-1 state dicts are converted into a generator file; a generator file must be a readable
    pulse generator of the registry's resolution; a .bz2 copy of a single file is decompressed.
    """
    model = get_model(name)
    files = [Path(f) for f in files]
    for f in files:
        if not f.is_file():
            raise PulseError(f"{f}: file not found")
    cache = resolve_cache_dir(cache_dir)
    if model.kind == "stylegan1-official":
        out = _converted(cache, model)
        known = {f.sha256: f"the registry's {f.name}" for f in model.files if f.sha256}
        notes = []
        for source in files:
            digest = sha256_file(source)
            origin = known.get(digest, "not hashed in the registry; judged by its tensors")
            notes.append(f"{source}: sha256 {digest}, {origin}")
        with _locked(out):
            return notes + _convert_into(model, files, out, fit_samples, device)
    if len(files) != 1:
        raise PulseError(f"{name} is one file; got {len(files)}")
    source, wfile = files[0], model.files[0]
    if model.kind == "generator":
        resolution = read_generator_file(source)["config"].get("resolution")
        if resolution != model.resolution:
            raise PulseError(f"{source}: a {resolution} px generator, but {name} is {model.resolution} px")
    target = _cached(cache, model, wfile.name)
    with _locked(target):
        digest, how = _copy_checked(source, target, wfile)
    return [f"{name}: imported {source} -> {target} ({how}, sha256 {digest})"]


def _copy_checked(source: Path, target: Path, wfile: WeightsFile) -> tuple[str, str]:
    """Copy (decompressing bz2) through a temp file, check size/sha256, rename into place, pin if unhashed."""
    with open(source, "rb") as probe:
        compressed = probe.read(3) == b"BZh"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.import")
    digest = hashlib.sha256()
    try:
        with (bz2.open(source, "rb") if compressed else open(source, "rb")) as src, open(tmp, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
        size = tmp.stat().st_size
        if wfile.size is not None and size != wfile.size:
            raise PulseError(f"{source}: {size} bytes, but the registry's {wfile.name} has {wfile.size}; not imported")
        if wfile.sha256 is not None and digest.hexdigest() != wfile.sha256:
            raise PulseError(f"{source}: sha256 {digest.hexdigest()} does not match the registry's {wfile.name} "
                             f"({wfile.sha256}); not imported")
        os.replace(tmp, target)
    except (OSError, EOFError) as err:
        raise PulseError(f"{source}: could not be read{' as bz2' if compressed else ''} ({err})")
    finally:
        tmp.unlink(missing_ok=True)
    if wfile.sha256 is None:
        _pin(target, digest.hexdigest())
        how = "no sha256 in the registry: pinned"
    else:
        how = "sha256 matches the registry"
    return digest.hexdigest(), ("decompressed, " if compressed else "") + how


def _convert_into(model: Model, sources, out: Path, fit_samples: int, device) -> list[str]:
    """Convert official state dicts into ``out`` and pin its sha256 (the caller holds the lock on ``out``)."""
    metadata = {"name": model.name, "resolution": model.resolution, "alignment": model.alignment,
                "data": model.data, "licence": model.licence, "description": model.description,
                "source": "official StyleGAN-1 state dicts: " + ", ".join(Path(s).name for s in sources)}
    report = import_official_stylegan1(sources, out, metadata=metadata, samples=fit_samples, device=device)
    _pin(out, sha256_file(out))
    return report


# ---------------------------------------------------------------- official StyleGAN-1 importer

PREFIXES = {"synthesis": ("g_synthesis.", "synthesis."), "mapping": ("g_mapping.", "mapping.")}
IGNORED_KEYS = {"truncation.avg_latent": "truncation is not used by the search"}


def import_official_stylegan1(files, out, *, metadata: dict, samples: int = DEFAULT_FIT_SAMPLES,
                              device=None) -> list[str]:
    """Official FFHQ StyleGAN-1 1024 state dicts -> a pulse generator file with its Gaussian fit.

    Takes PULSE's ``synthesis.pt`` + ``mapping.pt`` (or one file holding both under ``g_synthesis.`` /
    ``g_mapping.`` prefixes), loads them strictly, fills missing blur kernels (fixed [1, 2, 1] buffers),
    refuses anything else, fits the mapping output on ``samples`` latents (CUDA when available), and returns
    one line per thing it accepted or filled.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PulseError(f"device {device}: CUDA is not available here; use --device cpu")
    generator = Generator(GeneratorConfig.official_ffhq())
    expected = {"synthesis": generator.synthesis.state_dict(), "mapping": generator.mapping.state_dict()}
    found: dict[str, dict] = {"synthesis": {}, "mapping": {}}
    report = []
    for path in map(Path, files):
        counts = {"synthesis": 0, "mapping": 0}
        state = _read_state_dict(path)
        for key, tensor in state.items():
            part, local = _route(key, expected)
            if part is None:
                if key in IGNORED_KEYS:
                    report.append(f"{path}: ignored {key} ({IGNORED_KEYS[key]})")
                    continue
                raise PulseError(f"{path}: tensor {key!r} is not part of the official FFHQ StyleGAN-1 1024 layout; "
                                 f"not a StyleGAN-1 synthesis/mapping state dict")
            if local in found[part]:
                raise PulseError(f"{path}: {part} tensor {local!r} given twice")
            if tensor.shape != expected[part][local].shape:
                raise PulseError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected "
                                 f"{tuple(expected[part][local].shape)}; not the FFHQ 1024 model")
            found[part][local] = tensor
            counts[part] += 1
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values()} - {"float32"})
        report.append(f"{path}: accepted " + ", ".join(f"{n} {p} tensors" for p, n in counts.items() if n)
                      + (f" ({', '.join(dtypes)} converted to float32)" if dtypes else ""))
    for part, module in (("synthesis", generator.synthesis), ("mapping", generator.mapping)):
        missing = [k for k in expected[part] if k not in found[part]]
        blur = [k for k in missing if k.endswith(".intermediate.kernel")]
        if len(blur) < len(missing):
            absent = [k for k in missing if k not in blur]
            raise PulseError(f"official StyleGAN-1 {part}: {len(absent)} tensors missing (first: {absent[0]}); "
                             f"give PULSE's synthesis.pt and mapping.pt")
        for key in blur:
            found[part][key] = expected[part][key].clone()
        if blur:
            report.append(f"{part}: filled {len(blur)} missing blur kernels with the fixed [1, 2, 1] filter")
        module.load_state_dict({k: v.float() for k, v in found[part].items()}, strict=True)
    generator.eval().requires_grad_(False)
    with fit_progress(samples) as bar:
        fit = gaussian_fit(generator.mapping.to(device), generator.style_dim, samples=samples, device=device,
                           on_chunk=bar.update)
    generator.cpu()
    report.append(f"Gaussian fit of the mapping output: {samples:,} samples on {device}")
    save_generator(out, generator, fit, {**metadata, "resolution": generator.resolution})
    report.append(f"wrote {out}")
    return report


def _read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled code; anything else is not a torch file
        if "Unsupported global" in str(err):
            raise PulseError(f"{path}: refused: reading it would run pickled code (pulse reads plain state dicts "
                             f"only; convert NVIDIA's .pkl to PULSE's synthesis.pt/mapping.pt first)")
        raise PulseError(f"{path}: not a PyTorch state dict file ({type(err).__name__})")
    if not isinstance(state, dict):
        raise PulseError(f"{path}: holds a {type(state).__name__}, not a state dict")
    for key, value in state.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise PulseError(f"{path}: {key!r} is not a float tensor; not a StyleGAN-1 state dict")
    return state


def _route(key: str, expected: dict[str, dict]) -> tuple[str | None, str]:
    """Which network a key belongs to: by prefix (one-file layouts), else by name (PULSE's two files)."""
    for part, prefixes in PREFIXES.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                return part, key[len(prefix):]
    for part, keys in expected.items():
        if key in keys:
            return part, key
    return None, key


# ---------------------------------------------------------------- CLI

cache_option = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                            help=f"Cache folder (default: ${CACHE_ENV}, else ~/.cache/pulse).")
fit_options = [
    click.option("--fit-samples", type=click.IntRange(min=1000), default=DEFAULT_FIT_SAMPLES, show_default=True,
                 help="Latents for the Gaussian fit of an official model's mapping output."),
    click.option("--device", default=None, help="Device for that fit (default: cuda if available, else cpu)."),
]


def _with(options):
    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command
    return apply


class _WeightsGroup(click.Group):
    """Shows a PulseError as click's one-line "Error: ..." with exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PulseError as err:
            raise click.ClickException(str(err)) from None


@click.group(name="weights", cls=_WeightsGroup, context_settings={"help_option_names": ["-h", "--help"]})
def weights_cli():
    """List, download, verify and import generator and landmark weights.

    \b
    Examples:
      pulse weights list
      pulse weights download dlib-68-landmarks --no-verify
      pulse weights import ffhq-1024 synthesis.pt mapping.pt
      pulse weights verify
    """


@weights_cli.command("list")
@cache_option
def list_command(cache_dir):
    """Registry entries and whether each is installed (`verify` re-hashes)."""
    cache = resolve_cache_dir(cache_dir)
    for model in load_registry().values():
        installed = "installed" if _installed(model, cache) else "not installed"
        resolution = f"{model.resolution} px" if model.resolution else ""
        click.echo(f"{model.name:<20} {model.kind:<19} {resolution:>8}  {installed}")
        click.echo(f"    {model.description}; licence: {model.licence}")


@weights_cli.command("path")
@click.argument("name")
@cache_option
def path_command(name, cache_dir):
    """Print the verified local file of NAME (nothing is downloaded)."""
    click.echo(_locate(get_model(name), resolve_cache_dir(cache_dir), download_missing=False))


def describe_generator(path: Path) -> list[str]:
    """What a generator file holds, for a person: architecture, size, training record, search settings."""
    payload = read_generator_file(path)
    config = generator_config(payload["config"], origin=str(path))
    meta = dict(payload.get("metadata", {}))
    parameters = sum(t.numel() for t in payload["state_dict"].values())
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in payload["state_dict"].values()})
    lines = [f"{path} ({path.stat().st_size / 1e6:.1f} MB)",
             f"  architecture: {config.architecture}, {config.resolution} px, {config.n_styles} styles x {config.style_dim}, "
             f"{config.mapping_layers} mapping layers, widths {','.join(map(str, config.channels))} "
             f"(4..{config.resolution} px), {parameters / 1e6:.2f} M parameters stored as {'/'.join(dtypes)}"]
    defaults = meta.pop("search_defaults", None)
    commands = meta.pop("training_commands", None)
    lines += [f"  {key}: {value}" for key, value in meta.items() if value not in ("", None)]
    for leg in commands or []:
        start = "?" if leg.get("from_kimg") is None else f"{leg['from_kimg']:g}"
        lines.append(f"  trained from {start} kimg: {leg['command'] or '(from Python, no command)'}")
    settings = ", ".join(f"{k}={v}" for k, v in defaults.items()) if defaults else "none (PULSE's reference settings)"
    lines.append(f"  recommended search settings: {settings}")
    return lines


@weights_cli.command("info")
@click.argument("spec", metavar="NAME|FILE")
@cache_option
def info_command(spec, cache_dir):
    """What a generator file holds: architecture, training record, recommended search settings."""
    path = Path(spec)
    if not path.is_file():
        model = get_model(spec)
        if model.kind not in GENERATOR_KINDS:
            raise PulseError(f"{model.name} is a {model.kind} file, not a generator")
        path = _locate(model, resolve_cache_dir(cache_dir), download_missing=False)
    for line in describe_generator(path):
        click.echo(line)


@weights_cli.command("download")
@click.argument("name")
@click.option("--url", "urls", multiple=True, metavar="[FILE=]URL",
              help="Another place to get a file from, tried before the registry's mirrors (repeatable).")
@click.option("--no-verify", is_flag=True,
              help="Accept files the registry has no sha256 for, and pin the sha256 of what arrives.")
@click.option("--retries", type=click.IntRange(min=1), default=Retry.attempts, show_default=True,
              help="Attempts per URL.")
@cache_option
@_with(fit_options)
def download_command(name, urls, no_verify, retries, cache_dir, fit_samples, device):
    """Download NAME into the cache (resumable, verified; official models are converted)."""
    model = get_model(name)
    extra: dict[str, list[str]] = {}
    for spec in urls:
        filename, sep, url = spec.partition("=")
        if not sep or "://" in filename:
            if len(model.files) != 1:
                raise PulseError(f"--url {spec}: {name} has several files; write FILE=URL "
                                 f"(files: {', '.join(f.name for f in model.files)})")
            filename, url = model.files[0].name, spec
        extra.setdefault(filename, []).append(url)
    path = fetch(name, cache_dir=cache_dir, extra_urls=extra, trust_unverified=no_verify,
                 retry=Retry(attempts=retries), fit_samples=fit_samples, device=device)
    click.echo(path)


@weights_cli.command("verify")
@click.argument("name", required=False)
@cache_option
def verify_command(name, cache_dir):
    """Re-hash installed files; corrupt cached copies are deleted. Exit 1 if any was corrupt."""
    statuses = verify(name, cache_dir=cache_dir)
    for status in statuses:
        click.echo(status)
    if any(s.state == "corrupt" or (name and s.state == "missing") for s in statuses):
        raise SystemExit(1)


@weights_cli.command("import")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@cache_option
@_with(fit_options)
def import_command(name, files, cache_dir, fit_samples, device):
    """Put FILES you already have into the cache as NAME, checked like a download.

    For ffhq-1024 give PULSE's synthesis.pt and mapping.pt: they are converted into a generator file.
    """
    for line in import_files(name, files, cache_dir=cache_dir, fit_samples=fit_samples, device=device):
        click.echo(line)


if __name__ == "__main__":
    weights_cli(prog_name="python -m pulse.weights")
