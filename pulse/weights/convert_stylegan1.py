"""PULSE's official StyleGAN-1 FFHQ state dicts (``synthesis.pt`` / ``mapping.pt``) -> a pulse generator file."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PulseError
from ..models.generator_file import FIT_SAMPLES, write_generator_file
from ..models.stylegan1 import StyleGAN1Config, StyleGAN1Generator

PREFIXES = {"synthesis": ("g_synthesis.", "synthesis."), "mapping": ("g_mapping.", "mapping.")}


IGNORED_KEYS = {"truncation.avg_latent": "truncation is not used by the search"}


def import_official_stylegan1(files, out, *, metadata: dict, samples: int = FIT_SAMPLES,
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
    generator = StyleGAN1Generator(StyleGAN1Config.official_ffhq())
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
    write_generator_file(generator, out, metadata, fit_samples=samples, device=device)
    report += [f"Gaussian fit of the mapping output: {samples:,} samples on {device}", f"wrote {out}"]
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
