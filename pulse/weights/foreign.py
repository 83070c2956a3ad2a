"""Generators handed over as the field hands them: a file in another project's format, or a URL.

A foreign file (an NVlabs network pickle, a rosinality checkpoint, NVIDIA's TensorFlow pickle) is told apart by
what it holds, converted once into the cache under the file's sha256 and reused from there; a URL is downloaded
into the cache (resumed, its sha256 pinned on arrival) and then read like a file.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from ..errors import PulseError
from ..models.generator_file import FILE_FORMAT, FIT_SAMPLES
from ..progress import notice
from .convert_stylegan2 import NVLABS, ROSINALITY, read_pickle
from .convert_tf import STYLEGAN1_TF, STYLEGAN2_TF, generator_network, tf_variables
from .download import DownloadFailed, Retry, download, sha256_file
from .store import locked, pin, read_pin

SOURCE_NAMES = {"stylegan1-official": "official StyleGAN-1 state dicts", NVLABS: "NVlabs network pickle",
                ROSINALITY: "rosinality/stylegan2-pytorch checkpoint",
                STYLEGAN1_TF: "NVIDIA TensorFlow StyleGAN-1 pickle", STYLEGAN2_TF: "NVIDIA TensorFlow StyleGAN2 pickle"}

READABLE = ("a pulse generator file, an NVlabs StyleGAN2 network pickle, a rosinality/stylegan2-pytorch checkpoint "
            "or NVIDIA's TensorFlow StyleGAN/StyleGAN2 pickle; PULSE's synthesis.pt + mapping.pt go in with "
            "`pulse weights import ffhq-1024 synthesis.pt mapping.pt`")


def is_url(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


def is_generator_file(path: Path) -> bool:
    """A pulse generator file, told by its header in the archive's pickle without loading its tensors (the file
    is loaded once, by whoever asked); a damaged one is still taken for pulse's, to fail there with its reason."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next((name for name in archive.namelist() if name.endswith("/data.pkl")), None)
            return pickled is not None and FILE_FORMAT.encode() in archive.read(pickled)
    except (zipfile.BadZipFile, OSError):
        return False


def foreign_kind(path: Path) -> str:
    """Which converter reads ``path`` (read through the restricted unpickler), or one line saying what it is not."""
    from .unpickle import PersistentObject, TFNetwork

    data = read_pickle(path)
    if isinstance(data, dict) and any(isinstance(v, PersistentObject) for v in data.values()):
        return NVLABS
    if isinstance(data, TFNetwork) or (isinstance(data, tuple) and data and all(isinstance(n, TFNetwork) for n in data)):
        variables = tf_variables(path, generator_network(path, data))
        return STYLEGAN2_TF if "synthesis/4x4/Conv/mod_weight" in variables else STYLEGAN1_TF
    if isinstance(data, dict) and ("g_ema" in data or any(isinstance(k, str) and k.startswith("style.") for k in data)):
        return ROSINALITY
    raise PulseError(f"{path}: not a generator pulse can read; it reads {READABLE}")


def convert_source(kind: str, sources, out: Path, metadata: dict, *, resolution: int | None = None,
                   fit_samples: int = FIT_SAMPLES, device=None) -> list[str]:
    """Convert ``sources`` of ``kind`` into the generator file ``out`` (atomically); one line per thing done."""
    from .convert_stylegan1 import import_official_stylegan1
    from .convert_stylegan2 import import_stylegan2
    from .convert_tf import KINDS as TF_KINDS
    from .convert_tf import import_tf

    if kind == "stylegan1-official":
        return import_official_stylegan1(sources, out, metadata=metadata, samples=fit_samples, device=device)
    [source] = sources
    convert = import_tf if kind in TF_KINDS else import_stylegan2
    return convert(kind, source, out, metadata=metadata, resolution=resolution, samples=fit_samples, device=device)


def converted_generator(path: Path, cache: Path, *, fit_samples: int = FIT_SAMPLES, device=None) -> Path:
    """The generator file for a foreign ``path``: converted on first use into <cache>/converted/<sha256>.pt."""
    digest = sha256_file(path)
    out = cache / "converted" / f"{digest}.pt"
    with locked(out):
        if out.is_file() and read_pin(out) == sha256_file(out):
            return out
        convert_foreign(path, out, digest, fit_samples=fit_samples, device=device)
        pin(out, sha256_file(out))
    return out


def convert_foreign(path: Path, out: Path, digest: str | None = None, *, fit_samples: int = FIT_SAMPLES,
                    device=None) -> Path:
    """Convert the foreign generator ``path`` into the generator file ``out``, saying what it did."""
    kind = foreign_kind(path)
    notice(f"{path}: a {SOURCE_NAMES[kind]}; converting it into {out}")
    metadata = {"name": path.stem, "source": f"{SOURCE_NAMES[kind]}: {path.name} (given as a file)",
                "source_sha256": digest or sha256_file(path),
                "alignment": "unknown (FFHQ for NVIDIA's and most public face models)"}
    for line in convert_source(kind, [path], out, metadata, fit_samples=fit_samples, device=device):
        notice(line)
    return out


def fetched_url(url: str, cache: Path, *, retry: Retry = Retry(), progress: bool = True) -> Path:
    """The file at ``url``, downloaded once into <cache>/urls/ (resumed if cut; its sha256 pinned on arrival and
    checked on every later use)."""
    name = Path(urlparse(url).path).name or "download"
    target = cache / "urls" / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    with locked(target):
        pinned = read_pin(target)
        if target.is_file() and pinned is not None and pinned == sha256_file(target):
            return target
        try:
            digest = download([url], target, retry=retry, progress=progress)
        except DownloadFailed as err:
            raise PulseError(f"{url}: {err}") from None
        pin(target, digest)
    return target
