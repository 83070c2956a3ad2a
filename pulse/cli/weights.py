"""`pulse weights`: list, path, info, download, verify, import and convert."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import PulseError
from ..models.generator_file import FIT_SAMPLES, describe_generator
from ..models.srresnet import describe_sr_model
from ..weights.download import Retry
from ..weights.registry import CONVERTED_KINDS, GENERATOR_KINDS, Model, cpu_seconds_per_face, get_model, load_registry
from ..weights.resolve import fetch, import_files, is_installed, locate
from ..weights.store import CACHE_ENV, cache_path, converted_path, resolve_cache_dir, shipped_path, verify
from .common import PulseGroup, output_option

cache_option = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                            help=f"Cache folder (default: ${CACHE_ENV}, else ~/.cache/pulse).")


fit_options = [
    click.option("--fit-samples", type=click.IntRange(min=1000), default=FIT_SAMPLES, show_default=True,
                 help="Latents for the Gaussian fit of an official model's mapping output."),
    click.option("--device", default=None, help="Device for that fit (default: cuda if available, else cpu)."),
]


def _with(options):
    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command
    return apply


@click.group(name="weights", cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"]})
def weights_cli():
    """List, download, verify, import and convert generator and landmark weights.

    \b
    Examples:
      pulse weights list
      pulse weights download dlib-68-landmarks --no-verify
      pulse weights import ffhq-1024 synthesis.pt mapping.pt
      pulse weights import stylegan2-ffhq-config-f stylegan2-ffhq-config-f.pkl
      pulse weights convert network-snapshot-001000.pkl --output gen.pt
      pulse weights verify
    """


@weights_cli.command("list")
@cache_option
def list_command(cache_dir):
    """Registry entries, whether each is installed (`verify` re-hashes), its disk space and search cost on a CPU."""
    cache = resolve_cache_dir(cache_dir)
    costs = cpu_seconds_per_face()
    for model in load_registry().values():
        installed = is_installed(model, cache)
        resolution = f"{model.resolution} px" if model.resolution else ""
        state = "installed" if installed else "not installed"
        click.echo(f"{model.name:<24} {model.kind:<20} {resolution:>8}  {state}")
        starts = f"; starts the searches of {model.generator} at x{model.scale}" if model.kind == "encoder" else ""
        if model.chosen_by_name_only:
            starts = f"; for degraded inputs, chosen by name: --method {model.method} --sr-model {model.name}"
        click.echo(f"    {model.description}; licence: {model.licence}{starts}")
        click.echo(f"    {_cost(model, cache, installed, costs)}")
    click.echo("CPU: seconds per face for the search (100 steps, batch 8) on a 2-core CPU, as measured for the "
               "network's layout ([cpu_seconds_per_face] in weights/registry.toml)")


def _cost(model: Model, cache: Path, installed: bool, costs: dict[str, float]) -> str:
    """Disk (what the installed files take, else the registry's sizes) and, for generators, CPU seconds per face."""
    if installed:
        paths = [cache_path(cache, model, f.name) for f in model.files]
        paths += [shipped_path(f) for f in model.files if f.path]
        if model.kind in CONVERTED_KINDS:
            paths.append(converted_path(cache, model))
        disk = f"disk: {_bytes(sum(p.stat().st_size for p in set(paths) if p.is_file()))} used"
    elif all(f.size for f in model.files):
        converted = " + the converted generator file" if model.kind in CONVERTED_KINDS else ""
        disk = f"disk: {_bytes(sum(f.size for f in model.files))} to download{converted}"
    else:
        disk = "disk: size unknown until downloaded"
    if model.kind not in GENERATOR_KINDS:
        return disk
    if model.layout is None:
        return f"{disk}; CPU: unknown (layout not known)"
    seconds = costs.get(model.layout)
    if seconds is None:
        return f"{disk}; CPU: unknown ({model.layout} not measured)"
    return f"{disk}; CPU: {seconds:.3g} s per face" if seconds < 100 else f"{disk}; CPU: {seconds:.0f} s per face"


def _bytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


@weights_cli.command("path")
@click.argument("name")
@cache_option
def path_command(name, cache_dir):
    """Print the verified local file of NAME (nothing is downloaded)."""
    click.echo(locate(get_model(name), resolve_cache_dir(cache_dir), download_missing=False))




@weights_cli.command("info")
@click.argument("spec", metavar="NAME|FILE")
@cache_option
def info_command(spec, cache_dir):
    """What a generator, SR model or encoder file holds: architecture, training record, search settings."""
    from ..models.encoder import describe_encoder

    describers = {"sr-model": describe_sr_model, "encoder": describe_encoder}
    path = Path(spec)
    if path.is_file():
        candidates = [describe_generator, describe_sr_model, describe_encoder]  # a file given by path may be any
    else:
        model = get_model(spec)
        if model.kind not in (*GENERATOR_KINDS, *describers):
            raise PulseError(f"{model.name} is a {model.kind} file, not a generator, SR model or encoder")
        path = locate(model, resolve_cache_dir(cache_dir), download_missing=False)
        candidates = [describers.get(model.kind, describe_generator)]
    errors = []
    for describe in candidates:
        try:
            lines = describe(path)
            break
        except PulseError as err:
            errors.append(err)
    else:
        raise errors[0]
    for line in lines:
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

    For ffhq-1024 give PULSE's synthesis.pt and mapping.pt, for ffhq-1024-tf or stylegan2-ffhq-config-f NVIDIA's
    TensorFlow .pkl: they are converted into a generator file.
    """
    for line in import_files(name, files, cache_dir=cache_dir, fit_samples=fit_samples, device=device):
        click.echo(line)


@weights_cli.command("convert")
@click.argument("source", metavar="FILE|URL")
@output_option(None, "Generator file to write (never over an existing file).", file=True, required=True)
@cache_option
@_with(fit_options)
def convert_command(source, output, cache_dir, fit_samples, device):
    """Convert a generator in another project's format into a pulse generator file.

    SOURCE: an NVlabs StyleGAN2 network pickle (stylegan2-ada-pytorch, stylegan3), a rosinality/stylegan2-pytorch
    checkpoint or NVIDIA's TensorFlow StyleGAN/StyleGAN2 pickle, as a file or an http(s) URL (downloaded into the
    cache). `--generator FILE|URL` does the same on first use and keeps the result in the cache.
    """
    from ..weights.foreign import convert_foreign, fetched_url, is_url

    if output.exists():
        raise PulseError(f"{output}: exists; pulse does not write over it (choose another --output)")
    path = fetched_url(source, resolve_cache_dir(cache_dir)) if is_url(source) else Path(source)
    if not path.is_file():
        raise PulseError(f"{path}: file not found")
    convert_foreign(path, output, fit_samples=fit_samples, device=device)
    click.echo(f"wrote {output}")
