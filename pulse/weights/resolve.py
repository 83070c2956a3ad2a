"""From a name or a path to a verified local file: download, convert and import when needed."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PulseError
from ..models.encoder import LoadedEncoder, load_encoder
from ..models.generator_file import FIT_SAMPLES, LoadedGenerator, load_generator, read_generator_file
from ..models.srresnet import LoadedSRModel, load_sr_model
from ..progress import notice
from .download import DownloadFailed, Retry, download, sha256_file
from .foreign import SOURCE_NAMES, convert_source, converted_generator, fetched_url, is_generator_file, is_url
from .registry import (
    CONVERTED_KINDS,
    DEFAULT_GENERATOR,
    GENERATOR_KINDS,
    Model,
    WeightsFile,
    get_model,
    load_registry,
)
from .store import (
    _discard,
    cache_path,
    check_cached,
    check_shipped,
    converted_path,
    copy_checked,
    locked,
    pin,
    resolve_cache_dir,
    shipped_path,
)


def open_generator(spec: str | os.PathLike | None = None, device="cpu", *, cache_dir=None) -> LoadedGenerator:
    """The generator a user means, loaded for the search: a registry name or a file, default the bundled one."""
    return load_generator(resolve_generator(spec or DEFAULT_GENERATOR, cache_dir=cache_dir), device)


def resolve_generator(spec: str | os.PathLike, *, cache_dir=None) -> Path:
    """A generator file for ``spec``: a registry name's verified file; a pulse generator file as it is; a foreign
    one (NVlabs or TensorFlow pickle, rosinality checkpoint) converted once into the cache; an http(s) URL of
    either, downloaded into the cache first (a URL the registry lists is that entry, checked by its sha256).

    A downloadable name that is not cached is downloaded (and official checkpoints converted); every failure
    is a one-line ``PulseError`` saying what is missing and how to get it.
    """
    models = load_registry()
    if is_url(spec):
        listed = [m for m in models.values() if m.kind in GENERATOR_KINDS and len(m.files) == 1
                  and spec in m.files[0].urls]
        if listed:
            return locate(listed[0], resolve_cache_dir(cache_dir))
        spec = fetched_url(spec, resolve_cache_dir(cache_dir))
    path = Path(spec)
    if path.is_file():
        return path if is_generator_file(path) else converted_generator(path, resolve_cache_dir(cache_dir))
    if isinstance(spec, os.PathLike) or str(spec) not in models:
        if isinstance(spec, os.PathLike) or os.sep in str(spec) or path.suffix:
            raise PulseError(f"{spec}: generator file not found")
        names = ", ".join(n for n, m in models.items() if m.kind in GENERATOR_KINDS)
        raise PulseError(f"{spec}: no such generator file or registry name (known generators: {names})")
    model = models[str(spec)]
    if model.kind not in GENERATOR_KINDS:
        raise PulseError(f"{model.name} is a {model.kind} file, not a generator")
    return locate(model, resolve_cache_dir(cache_dir))




def open_sr_model(spec: str | os.PathLike | None = None, scale: float = 8, device="cpu", *,
                  method: str | None = "srresnet", cache_dir=None) -> LoadedSRModel:
    """The feed-forward super-resolver a user means: a file or a registry name; by default the registry's
    sr-model of ``method`` ("srresnet" or "srgan") for ``scale`` trained on clean inputs (one trained on degraded
    inputs is a choice a user makes by name). What the registry lacks is a one-line error
    listing what it has; a network of the other method is refused in one line (the names must not mislead).
    ``method=None`` (benchmarks comparing networks of both kinds) takes a named network of either method and,
    by default, the srresnet one."""
    models = load_registry()
    if spec is None:
        sr_models = [m for m in models.values() if m.kind == "sr-model"]
        by_scale = {m.scale: m for m in sr_models if m.method == (method or "srresnet") and not m.chosen_by_name_only}
        if scale not in by_scale:
            have = ", ".join(f"{m.method} x{m.scale} ({m.name})" for m in sr_models) or "none"
            raise PulseError(f"no {method} network for scale {scale:g}; the registry has: {have} "
                             "(or pass --sr-model FILE, a network made by `pulse train-sr`)")
        path = locate(by_scale[scale], resolve_cache_dir(cache_dir))
    elif Path(spec).is_file():
        path = Path(spec)
    elif str(spec) in models and models[str(spec)].kind == "sr-model":
        path = locate(models[str(spec)], resolve_cache_dir(cache_dir))
    else:
        names = ", ".join(n for n, m in models.items() if m.kind == "sr-model") or "none"
        raise PulseError(f"{spec}: no such SR model file or registry name (known SR models: {names})")
    loaded = load_sr_model(path, device)
    if loaded.scale != scale:
        raise PulseError(f"{path}: enlarges x{loaded.scale} only, not x{scale:g}")
    if method is not None:
        check_sr_method(loaded, method, path)
    return loaded


def open_encoder(spec: str | os.PathLike | None, generator_sha256: str, generator_name: str, scale: float,
                 device="cpu", *, cache_dir=None) -> LoadedEncoder | None:
    """The latent encoder that starts the searches of a generator (by its file's sha256) at ``scale``: ``spec`` (a
    file or registry name; one of another generator or scale is refused in one line), or with no spec the first
    installed registry encoder made for them, else None. Nothing is downloaded without a spec."""
    models = load_registry()
    cache = resolve_cache_dir(cache_dir)
    if spec is None:
        for model in models.values():
            if model.kind == "encoder" and model.scale == scale and is_installed(model, cache):
                encoder = load_encoder(locate(model, cache, download_missing=False))  # on the CPU until it matches
                if encoder.generator_sha256 == generator_sha256:
                    return encoder.to(device)
        return None
    if Path(spec).is_file():
        path = Path(spec)
    elif str(spec) in models and models[str(spec)].kind == "encoder":
        path = locate(models[str(spec)], cache)
    else:
        names = ", ".join(n for n, m in models.items() if m.kind == "encoder") or "none"
        raise PulseError(f"{spec}: no such encoder file or registry name (known encoders: {names})")
    encoder = load_encoder(path, device)
    encoder.check_generator(generator_sha256, generator_name)
    if encoder.scale != scale:
        raise PulseError(f"{path}: an encoder for x{encoder.scale}, not x{scale:g}")
    return encoder


def check_sr_method(loaded: LoadedSRModel, method: str, name) -> None:
    if loaded.method != method:
        kind = "an adversarially trained (srgan)" if loaded.method == "srgan" else "a pixel-loss (srresnet)"
        raise PulseError(f"{name}: {kind} network; use --method {loaded.method}")


def resolve_file(name: str, *, cache_dir=None) -> Path:
    """The verified local file of a single-file registry entry (e.g. the dlib predictor), downloading it if needed."""
    model = get_model(name)
    if len(model.files) != 1:
        raise PulseError(f"{name} has {len(model.files)} files; use resolve_generator({name!r})")
    return locate(model, resolve_cache_dir(cache_dir))


def fetch(name: str, *, cache_dir=None, extra_urls: dict[str, list[str]] | None = None,
          trust_unverified: bool = False, retry: Retry = Retry(), progress: bool = True,
          fit_samples: int = FIT_SAMPLES, device=None) -> Path:
    """Download what ``name`` lacks (``extra_urls[file]`` first, then the registry's mirrors); return its file.

    ``trust_unverified`` accepts files the registry has no sha256 for and pins the sha256 of what arrived.
    """
    model = get_model(name)
    unknown = set(extra_urls or ()) - {f.name for f in model.files}
    if unknown:
        raise PulseError(f"{name} has no file {', '.join(sorted(unknown))} (files: "
                         f"{', '.join(f.name for f in model.files)})")
    return locate(model, resolve_cache_dir(cache_dir), extra_urls=extra_urls or {},
                   trust_unverified=trust_unverified, retry=retry, progress=progress,
                   fit_samples=fit_samples, device=device)


def locate(model: Model, cache: Path, *, download_missing: bool = True, extra_urls: dict | None = None,
            trust_unverified: bool = False, retry: Retry = Retry(), progress: bool = True,
            fit_samples: int = FIT_SAMPLES, device=None) -> Path:
    """The usable file of ``model``: shipped, cached, or (``download_missing``) downloaded/converted now."""
    get = dict(download_missing=download_missing, extra_urls=extra_urls or {},
               trust_unverified=trust_unverified, retry=retry, progress=progress)
    if model.kind not in CONVERTED_KINDS:
        return _locate_file(model, model.files[0], cache, **get)
    out = converted_path(cache, model)
    flag = "" if all(f.sha256 for f in model.files) else " --no-verify"
    not_installed = f"{model.name} is not installed: run `pulse weights download {model.name}{flag}`"
    if not download_missing and not out.exists():
        raise PulseError(not_installed)
    with locked(out):
        if check_cached(model, out).state == "ok":
            return out
        if not download_missing:
            raise PulseError(not_installed)
        sources = [_locate_file(model, wfile, cache, **get) for wfile in model.files]
        urls = [*get["extra_urls"].get(model.files[0].name, ()), *model.files[0].urls]
        try:
            report = _convert_into(model, sources, out, fit_samples, device, urls=urls)
        except PulseError as err:
            raise PulseError(str(err) + _drop_unconvertible(model, sources, str(err))) from None
        for line in report:
            notice(line)
    return out


def _drop_unconvertible(model: Model, sources: list[Path], message: str) -> str:
    """A downloaded file the registry has no sha256 for, pinned on arrival, that the converter refused is no good
    copy: delete it and its pin so the next download fetches it afresh. Returns a note for the error line."""
    dropped = []
    for wfile, source in zip(model.files, sources):
        if wfile.sha256 is None and not wfile.path and message.startswith(f"{source}:"):
            _discard(source)
            dropped.append(source.name)
    return f" (deleted the downloaded {', '.join(dropped)} and its pin)" if dropped else ""


def is_installed(model: Model, cache: Path) -> bool:
    """Present where resolve would look (no hashing: `verify` does that)."""
    if model.kind in CONVERTED_KINDS:
        return converted_path(cache, model).is_file()
    wfile = model.files[0]
    return (bool(wfile.path) and shipped_path(wfile).is_file()) or cache_path(cache, model, wfile.name).is_file()


def _locate_file(model: Model, wfile: WeightsFile, cache: Path, *, download_missing: bool, extra_urls: dict,
                 trust_unverified: bool, retry: Retry, progress: bool) -> Path:
    if wfile.path:
        status = check_shipped(model, wfile)
        if status.state == "corrupt":
            lfs = status.path.read_bytes()[:64].startswith(b"version https://git-lfs")
            hint = "a Git LFS pointer, not the weights: run `git lfs pull`" if lfs else status.detail
            raise PulseError(f"{status.path}: corrupt ({hint}); restore it from the pulse repository")
        if status.state == "ok":
            return status.path
    target = cache_path(cache, model, wfile.name)
    urls = [*extra_urls.get(wfile.name, ()), *wfile.urls]
    if not target.exists() and not (urls and download_missing):
        raise PulseError(_missing_message(model, wfile, target, downloadable=bool(urls)))
    with locked(target):
        status = check_cached(model, target, wfile)
        if status.state == "ok":
            return target
        if status.state == "corrupt":
            notice(f"{status}: downloading it again")
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
            way = ("The servers answered with another file than the registry pins (changed upstream?): place a copy "
                   "you trust" if err.wrong_file else "Without network: fetch the file elsewhere and place it")
            raise PulseError(f"{model.name}: {err}. {way} with {model.import_command}") from None
        if wfile.sha256 is None:
            pin(target, digest)
        return target


def _missing_message(model: Model, wfile: WeightsFile, target: Path, downloadable: bool) -> str:
    if wfile.path and not downloadable:
        return (f"the bundled generator {model.name} is not installed (weights/{wfile.path} missing): pass "
                f"--generator PATH (a file made by `pulse train export`) or import one with {model.import_command}")
    if downloadable:
        flag = "" if wfile.sha256 else " --no-verify"
        return f"{model.name} is not installed ({target} missing): run `pulse weights download {model.name}{flag}`"
    return f"{model.name}: {wfile.name} is not installed and has no URL: place it with {model.import_command}"


def import_files(name: str, files, *, cache_dir=None, fit_samples: int = FIT_SAMPLES,
                 device=None) -> list[str]:
    """Place user-supplied files into the cache as ``name``, checked like downloads; return what was done.

    Official StyleGAN-1 state dicts, NVlabs' StyleGAN2 pickles, NVIDIA's TensorFlow pickles and rosinality's
    checkpoints are converted into a generator file; a generator file must be a readable pulse generator of the
    registry's resolution; a .bz2 copy of a single file is decompressed.
    """
    model = get_model(name)
    files = [Path(f) for f in files]
    for f in files:
        if not f.is_file():
            raise PulseError(f"{f}: file not found")
    cache = resolve_cache_dir(cache_dir)
    if model.kind in CONVERTED_KINDS:
        if model.kind != "stylegan1-official" and len(files) != 1:
            raise PulseError(f"{name} is converted from one file; got {len(files)}")
        out = converted_path(cache, model)
        known = {f.sha256: f"the registry's {f.name}" for f in model.files if f.sha256}
        notes = []
        for source in files:
            digest = sha256_file(source)
            origin = known.get(digest, "not hashed in the registry; judged by its tensors")
            notes.append(f"{source}: sha256 {digest}, {origin}")
        with locked(out):
            return notes + _convert_into(model, files, out, fit_samples, device)
    if len(files) != 1:
        raise PulseError(f"{name} is one file; got {len(files)}")
    source, wfile = files[0], model.files[0]
    if model.kind == "generator":
        resolution = read_generator_file(source)["config"].get("resolution")
        if resolution != model.resolution:
            raise PulseError(f"{source}: a {resolution} px generator, but {name} is {model.resolution} px")
    target = cache_path(cache, model, wfile.name)
    with locked(target):
        digest, how = copy_checked(source, target, wfile)
    return [f"{name}: imported {source} -> {target} ({how}, sha256 {digest})"]


def _convert_into(model: Model, sources, out: Path, fit_samples: int, device, urls=None) -> list[str]:
    """Convert the sources of a converted kind into ``out`` and pin its sha256 (the caller holds the lock on
    ``out``). ``urls``: where a download came from (None: the user imported the files). On any error ``out``
    and its pin are left as they were."""
    sources = [Path(s) for s in sources]
    metadata = {"name": model.name, "resolution": model.resolution, "alignment": model.alignment,
                "data": model.data, "licence": model.licence, "description": model.description,
                "source": f"{SOURCE_NAMES[model.kind]}: " + ", ".join(s.name for s in sources)}
    if model.kind != "stylegan1-official":
        metadata["source"] += " (downloaded)" if urls is not None else " (imported)"
        if urls:
            metadata["source_url"] = urls[0] if len(urls) == 1 else "one of " + ", ".join(urls)
        metadata["source_sha256"] = sha256_file(sources[0])
    report = convert_source(model.kind, sources, out, metadata, resolution=model.resolution or None,
                            fit_samples=fit_samples, device=device)
    pin(out, sha256_file(out))
    return report
