"""`pulse weights`: list, path, info, download, verify and import."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import PulseError
from ..models.generator_file import FIT_SAMPLES, describe_generator
from ..weights.download import Retry
from ..weights.registry import GENERATOR_KINDS, get_model, load_registry
from ..weights.resolve import fetch, import_files, is_installed, locate
from ..weights.store import CACHE_ENV, resolve_cache_dir, verify
from .common import PulseGroup

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
        state = "installed" if is_installed(model, cache) else "not installed"
        resolution = f"{model.resolution} px" if model.resolution else ""
        click.echo(f"{model.name:<20} {model.kind:<19} {resolution:>8}  {state}")
        click.echo(f"    {model.description}; licence: {model.licence}")


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
    """What a generator file holds: architecture, training record, recommended search settings."""
    path = Path(spec)
    if not path.is_file():
        model = get_model(spec)
        if model.kind not in GENERATOR_KINDS:
            raise PulseError(f"{model.name} is a {model.kind} file, not a generator")
        path = locate(model, resolve_cache_dir(cache_dir), download_missing=False)
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
