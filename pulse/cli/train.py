"""`pulse train` (with `pulse train export`): train a generator, or export a checkpoint as a generator file.

Training options default to None here so that ``--resume`` can tell what was given on this command line
(overrides) from what should come from the checkpoint; the documented defaults live in ``TrainConfig``.
"""

from __future__ import annotations

import shlex
import sys

import click

from ..search import parse_search_defaults
from ..training.config import TrainConfig
from ..training.export import export_checkpoint
from ..training.loop import train
from .common import PulseGroup, device_option, output_option, say, widths_callback

DEFAULTS = TrainConfig(data=["-"], out="-")


_channels = widths_callback("4 px")


def _default(name: str) -> str:
    return f"[default: {getattr(DEFAULTS, name)}]"


@click.group("train", cls=PulseGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", multiple=True, type=click.Path(),
              help="Folder of images (searched recursively, zip shards included), a zip shard, or an image; "
                   "repeat for several.")
@output_option(None, "Run folder: checkpoints, log, sample grids.")
@click.option("--architecture", type=click.Choice(["stylegan2", "stylegan1"]),
              help=f"Generator architecture {_default('architecture')}")
@click.option("--resolution", type=int, help=f"Image size, a power of two {_default('resolution')}")
@click.option("--kimg", type=float, help=f"Training length in thousands of real images {_default('kimg')}")
@click.option("--batch", type=int, help=f"Images per optimiser step over all GPUs {_default('batch')}")
@click.option("--grad-accum", type=int, help=f"Micro-batches per step and process {_default('grad_accum')}")
@click.option("--g-lr", type=float, help=f"Generator learning rate {_default('g_lr')}")
@click.option("--d-lr", type=float, help=f"Discriminator learning rate {_default('d_lr')}")
@click.option("--r1-gamma", type=float,
              help="R1 penalty weight [default: 0.0002 * resolution^2 / batch; 0 with --discriminator projected]")
@click.option("--ema-kimg", type=float, help=f"Half-life of G's moving average, kimg {_default('ema_kimg')}")
@click.option("--mixing-prob", type=float, help=f"Style-mixing probability {_default('mixing_prob')}")
@click.option("--augment", help=f"DiffAugment operations (color, translation, cutout), or 'none' "
                               f"{_default('augment')}")
@click.option("--ada-target", type=float,
              help="Adaptive augmentation: apply each --augment operation with a probability that keeps "
                   "E[sign D(real)] near this (ADA uses 0.6); 0 = always apply [default: 0]")
@click.option("--seed", type=int, help=f"Random seed {_default('seed')}")
@click.option("--channels", callback=_channels, help="Generator widths per level from 4 px, comma-separated "
                                                     "[default: the architecture's, train.default_channels]")
@click.option("--discriminator", type=click.Choice(["residual", "dcgan", "projected", "hybrid"]),
              help="Discriminator kind: projected = small heads on dlib's frozen face ResNet (needs pulse[eval]); "
                   "hybrid = those heads beside a full-resolution dcgan D "
                   "[default: residual for stylegan2, dcgan for stylegan1]")
@click.option("--feature-weight", type=float,
              help=f"Hybrid D: weight of the face-feature heads' logit {_default('feature_weight')}")
@click.option("--d-warmup-kimg", type=float,
              help=f"Train D alone (G frozen) for this many kimg first, e.g. a fresh D for --init "
                   f"{_default('d_warmup_kimg')}")
@click.option("--d-channels", callback=_channels,
              help="Discriminator widths per level from 4 px, comma-separated [default: the generator's]")
@click.option("--style-dim", type=int, help=f"Latent and style width {_default('style_dim')}")
@click.option("--mapping-layers", type=int,
              help="Dense layers in the mapping [default: 2 for stylegan2, 8 for stylegan1]")
@click.option("--checkpoint-every", type=float, help=f"kimg between checkpoints {_default('checkpoint_every')}")
@click.option("--snapshot-every", type=float,
              help=f"kimg between checkpoints kept for good, 0 for none {_default('snapshot_every')}")
@click.option("--log-every", type=float, help=f"kimg between log lines {_default('log_every')}")
@device_option(default=None, help="[default: auto]")
@click.option("--cache-gb", type=float, help=f"Memory for decoded images per process {_default('cache_gb')}")
@click.option("--fit-samples", type=int, help=f"Latents for the exported Gaussian fit {_default('fit_samples')}")
@click.option("--metrics-every", type=float,
              help="kimg between generator metrics in log.jsonl (FD, KID, precision/recall, diversity, dlib "
                   "detection; needs pulse[eval]), 0 for none [default: 0]")
@click.option("--metrics-samples", type=int,
              help=f"Samples and real faces per measurement {_default('metrics_samples')}")
@click.option("--resume", type=click.Path(dir_okay=False),
              help="Continue exactly from a checkpoint (runs/NAME/latest.ckpt); its options apply unless given.")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Fine-tune: start G and G_ema from this generator file (D starts fresh).")
@click.pass_context
def train_command(ctx, resume, init, **options):
    """Train a generator on aligned faces (StyleGAN2 by default: non-saturating loss, R1, EMA, DiffAugment).

    \b
    Examples:
      pulse train --data ../shared/data/faces128 --resolution 128 --output runs/faces128
      pulse train --resume runs/faces128/latest.ckpt
      pulse train --init generator.pt --data my_faces/ --kimg 200 --output runs/finetune
      torchrun --nproc_per_node=8 -m pulse train --data faces/ --batch 256 --output runs/big
      pulse train export runs/faces128/latest.ckpt --output faces128.pt --half

    The run folder gets latest.ckpt (always complete), snapshot-*kimg.ckpt (kept for good), log.jsonl, a
    sample grid per checkpoint and, at the end, generator.pt for `pulse run`. Faces must be FFHQ-aligned
    (`pulse align`). Ctrl-C stops after the current step and saves latest.ckpt first.
    """
    if ctx.invoked_subcommand is not None:
        if resume or init or any(v not in (None, ()) for v in options.values()):
            raise click.UsageError("training options go with `pulse train`, not before a subcommand")
        return
    options["data"] = list(options["data"]) or None
    options["out"] = options.pop("output")
    if not (options["data"] or resume):
        raise click.UsageError("Missing option '--data' (or --resume a run)")
    command = "pulse " + shlex.join(sys.argv[1:])
    path = train(options, resume=resume, init=init, command=command, report=say)
    if path is not None:
        say(f"generator: {path}")


@train_command.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@output_option(None, "Generator file to write.", file=True, required=True)
@click.option("--half", is_flag=True, help="Store weights as float16 (half the size).")
@click.option("--fit-samples", type=int, default=1_000_000, show_default=True,
              help="Latents for the Gaussian fit the search samples from.")
@device_option()
@click.option("--search-default", "search_defaults", multiple=True, metavar="FIELD=VALUE",
              help="Search setting recommended for this generator, used when a user gives none (repeatable), "
                   "e.g. loss=100*L2+0.01*GEOCROSS.")
def export_command(checkpoint, output, half, fit_samples, device, search_defaults):
    """Write the generator file (G_ema, a fresh Gaussian fit, metadata) of a training checkpoint."""
    try:
        defaults = parse_search_defaults(search_defaults)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--search-default")
    path = export_checkpoint(checkpoint, output, half=half, fit_samples=fit_samples, device=device,
                             search_defaults=defaults)
    say(f"generator: {path}")
