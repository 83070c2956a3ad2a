"""The weights registry: ``weights/registry.toml`` read and checked, one ``Model`` per name."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import PulseError

DEFAULT_GENERATOR = "pulse-faces-128"


def _weights_dir() -> Path:
    """A checkout's weights/ (clone, editable install), else the copy a wheel ships as pulse/_weights."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "weights"
    return checkout if (checkout / "registry.toml").is_file() else package / "_weights"


REGISTRY_ENV = "PULSE_REGISTRY"  # a registry.toml of one's own (a team's models and mirrors, a test's), added


def registry_path() -> Path:
    """The registry shipped with pulse."""
    return _weights_dir() / "registry.toml"


def registry_paths() -> list[Path]:
    """The registries pulse reads, in order: the shipped one, then ``$PULSE_REGISTRY``'s (its entries add to the
    shipped ones and replace those of the same name)."""
    extra = os.environ.get(REGISTRY_ENV)
    return [registry_path(), *([Path(extra)] if extra else [])]


# kinds whose source files are converted into a generator file <cache>/NAME/NAME.pt on download or import
CONVERTED_KINDS = ("stylegan1-official", "stylegan1-tf", "stylegan2-nvlabs", "stylegan2-rosinality", "stylegan2-tf")


GENERATOR_KINDS = ("generator", *CONVERTED_KINDS)


KINDS = (*GENERATOR_KINDS, "sr-model", "encoder", "landmarks")


SR_METHODS = ("srresnet", "srgan")  # the feed-forward methods: the pixel-loss network, the adversarial one
SR_INPUTS = ("clean", "degraded")  # what an sr-model was trained on: pulse's bicubic LR, or photo-like degraded LR


NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class WeightsFile:
    name: str
    urls: tuple[str, ...] = ()
    path: str | None = None  # shipped beside the registry that names it, relative to that registry's folder
    folder: Path | None = None  # that folder
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
    scale: int | None = None  # sr-model, encoder: the one enlargement the network was trained for
    method: str | None = None  # sr-model: "srresnet" (pixel loss) or "srgan" (adversarially trained)
    layout: str | None = None  # generators: the network layout, a key of the registry's [cpu_seconds_per_face]
    generator: str | None = None  # encoder: the registry name of the generator whose searches it starts
    inputs: str | None = None  # sr-model: "clean" (the method's default network) or "degraded" (chosen by name)

    @property
    def chosen_by_name_only(self) -> bool:
        """An sr-model for degraded inputs: never a method's default network, only taken when named."""
        return self.inputs == "degraded"

    @property
    def import_command(self) -> str:
        files = " ".join(f.name for f in self.files) if self.kind == "stylegan1-official" else "FILE"
        return f"`pulse weights import {self.name} {files}`"


def load_registry(path=None) -> dict[str, Model]:
    """Parse and validate the registries (or the one file ``path``); a malformed entry is an error naming it,
    never silently skipped."""
    if path is None:
        return {name: model for registry in registry_paths() for name, model in load_registry(registry).items()}
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise PulseError(f"{path}: weights registry not found (pulse must be installed from its repository)")
    except tomllib.TOMLDecodeError as err:
        raise PulseError(f"{path}: not valid TOML ({err})")
    return {name: _parse_model(path, name, table) for name, table in raw.get("models", {}).items()}


def cpu_seconds_per_face(path=None) -> dict[str, float]:
    """The registry's measured search cost per network layout: seconds per face on a 2-core CPU, 100 steps, batch 8."""
    if path is None:
        return {layout: cost for registry in registry_paths() for layout, cost in cpu_seconds_per_face(registry).items()}
    path = Path(path)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("cpu_seconds_per_face", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # load_registry names the problem
    bad = [k for k, v in table.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0]
    if bad:
        raise PulseError(f"{path}: cpu_seconds_per_face {bad[0]!r} must be a positive number of seconds")
    return {k: float(v) for k, v in table.items()}


def _parse_model(path: Path, name: str, table: dict) -> Model:
    where = f"{path}: model {name!r}"
    _check_name(name, where)
    table = dict(table)
    try:
        files = tuple(_parse_file(where, f, path.parent) for f in table.pop("files"))
        model = Model(name=name, files=files, **table)
    except (KeyError, TypeError) as err:
        raise PulseError(f"{where}: missing or unknown field ({err})")
    if model.kind not in KINDS:
        raise PulseError(f"{where}: kind must be one of {', '.join(KINDS)}, not {model.kind!r}")
    if not files or (model.kind != "stylegan1-official" and len(files) != 1):
        raise PulseError(f"{where}: a {model.kind} entry has exactly one file, this one has {len(files)}")
    if (model.kind in ("sr-model", "encoder")) != (model.scale is not None):
        raise PulseError(f"{where}: scale is given for sr-model and encoder entries, and only for them")
    if (model.kind == "encoder") != (model.generator is not None):
        raise PulseError(f"{where}: generator (the name of the generator it belongs to) is given for encoder "
                         "entries, and only for them")
    if (model.kind == "sr-model") != (model.method in SR_METHODS):
        raise PulseError(f"{where}: method ({' or '.join(SR_METHODS)}) is given for sr-model entries, and only for "
                         "them")
    if model.inputs is not None and (model.kind != "sr-model" or model.inputs not in SR_INPUTS):
        raise PulseError(f"{where}: inputs ({' or '.join(SR_INPUTS)}) is given for sr-model entries only")
    if model.layout is not None and model.kind not in GENERATOR_KINDS:
        raise PulseError(f"{where}: layout is given for generator entries only")
    return model


def _parse_file(where: str, table: dict, folder: Path) -> WeightsFile:
    table = dict(table)
    table.pop("folder", None)
    sha = table.pop("sha256", "").lower() or None
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise PulseError(f"{where}: sha256 must be 64 hex digits or empty, got {sha!r}")
    wfile = WeightsFile(sha256=sha, size=table.pop("size", 0) or None,
                        urls=tuple(table.pop("urls", ())), folder=folder if table.get("path") else None, **table)
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
