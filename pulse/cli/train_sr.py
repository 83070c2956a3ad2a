"""`pulse train-sr` (with `pulse train-sr export`): train the feed-forward super-resolver, or export a checkpoint.

Training options default to None here so that ``--resume`` can tell what was given on this command line
(overrides) from what should come from the checkpoint; the documented defaults live in ``SRTrainConfig``.
"""

from __future__ import annotations

import shlex
import sys

import click

from ..training.sr_loop import SRTrainConfig, export_sr_checkpoint, train_sr
from .common import PulseGroup, device_option, output_option, say

DEFAULTS = SRTrainConfig(data=["-"], out="-")


def _default(name: str) -> str:
    return f"[default: {getattr(DEFAULTS, name)}]"


@click.group("train-sr", cls=PulseGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", multiple=True, type=click.Path(),
              help="Folder of HR faces (searched recursively, zip shards included), a zip shard, or an image; "
                   "repeat for several.")
@output_option(None, "Run folder: checkpoints, log, sample grids, sr.pt.")
@click.option("--scale", type=int, help=f"Upscaling factor: 2, 4 or 8 {_default('scale')}")
@click.option("--hr-size", type=int, help=f"HR face size in px; the LR size is this / --scale {_default('hr_size')}")
@click.option("--channels", type=int, help=f"SRResNet width at the LR size {_default('channels')}")
@click.option("--blocks", type=int, help=f"SRResNet residual blocks {_default('blocks')}")
@click.option("--batch-norm/--no-batch-norm", default=None, help="BatchNorm in the residual blocks [default: no]")
@click.option("--upsample", type=click.Choice(["pixelshuffle", "nearest"]),
              help=f"x2 stages: sub-pixel conv + PixelShuffle, or nearest-neighbour + conv {_default('upsample')}")
@click.option("--icnr/--no-icnr", default=None,
              help="Initialise the sub-pixel convs by ICNR (no checkerboard at the start) [default: no]")
@click.option("--init", type=click.Path(dir_okay=False, exists=True),
              help="Start from an SR file's network (e.g. weights/pulse-sr-x8.pt with --pixel-kimg 0: the GAN stage "
                   "on the bundled network); the network options are the file's, but --upsample may differ (then "
                   "the x2 stages start fresh) [default: fresh weights]")
@click.option("--batch", type=int, help=f"HR faces per step {_default('batch')}")
@click.option("--lr", type=float, help=f"Adam learning rate of the network and D {_default('lr')}")
@click.option("--kimg", type=float, help=f"Training length in thousands of HR faces {_default('kimg')}")
@click.option("--pixel-kimg", type=float,
              help=f"Length of the first stage (L1 only); the GAN stage runs from there to --kimg "
                   f"{_default('pixel_kimg')}")
@click.option("--perceptual-weight", type=float,
              help=f"GAN stage: VGG16 feature distance {_default('perceptual_weight')}")
@click.option("--adversarial-weight", type=float,
              help=f"GAN stage: relativistic adversarial loss {_default('adversarial_weight')}")
@click.option("--pixel-weight", type=float, help=f"GAN stage: L1 to the HR face {_default('pixel_weight')}")
@click.option("--lr-consistency", type=float,
              help=f"Both stages: L1 between the output downscaled and the LR input {_default('lr_consistency')}")
@click.option("--perceptual-layers",
              help=f"VGG16 layers of the perceptual loss, from relu1_2 ... relu5_3 {_default('perceptual_layers')}")
@click.option("--discriminator", type=click.Choice(["vgg", "vgg-sn", "unet"]),
              help="GAN stage: SRGAN's VGG-style D (a logit per face; vgg-sn: spectrally normalised, no BatchNorm) "
                   f"or Real-ESRGAN's spectrally normalised U-Net (a logit per pixel) {_default('discriminator')}")
@click.option("--d-width", type=int, help=f"Discriminator's first width (doubles per level) {_default('d_width')}")
@click.option("--d-lr", type=float, help="Adam learning rate of D, 0 for the same as --lr [default: 0]")
@click.option("--gan-loss", type=click.Choice(["relativistic", "lsgan"]),
              help=f"GAN stage: relativistic average or least-squares adversarial loss {_default('gan_loss')}")
@click.option("--ema-kimg", type=float,
              help="Half-life in kimg of an average of the network's weights, which is then what gets measured "
                   "and exported; 0 for none [default: 0]")
@click.option("--degradation", type=click.Choice(["bicubic", "realesrgan"]),
              help="Training inputs: pulse's clean bicubic downscale, or Real-ESRGAN's blur -> random resize -> "
                   f"noise -> JPEG {_default('degradation')}")
@click.option("--clean-share", type=click.FloatRange(0, 1),
              help="With --degradation realesrgan: the share of each batch trained on the clean bicubic input, so "
                   f"clean inputs are not over-sharpened {_default('clean_share')}")
@click.option("--seed", type=int, help=f"Random seed {_default('seed')}")
@click.option("--checkpoint-every", type=float, help=f"kimg between checkpoints {_default('checkpoint_every')}")
@click.option("--snapshot-every", type=float,
              help=f"kimg between checkpoints kept for good, 0 for none {_default('snapshot_every')}")
@click.option("--log-every", type=float, help=f"kimg between log lines {_default('log_every')}")
@device_option(default=None, help="[default: auto]")
@click.option("--cache-gb", type=float, help=f"Memory for decoded faces {_default('cache_gb')}")
@click.option("--resume", type=click.Path(dir_okay=False),
              help="Continue exactly from a checkpoint (runs/NAME/latest.ckpt); its options apply unless given.")
@click.pass_context
def train_sr_command(ctx, resume, **options):
    """Train a feed-forward face super-resolver (SRResNet or SRGAN) on aligned faces.

    Two stages: L1 to the HR face for --pixel-kimg, then VGG16 perceptual + relativistic adversarial + a small
    L1 term up to --kimg. The LR inputs are pulse's own bicubic downscales of the faces, as `pulse run` gets them.

    \b
    Examples:
      pulse train-sr --data ../shared/data/faces128 --scale 8 --output runs/sr8
      pulse train-sr --resume runs/sr8/latest.ckpt
      pulse train-sr --data faces/ --init weights/pulse-sr-x8.pt --pixel-kimg 0 --output runs/gan8
      pulse train-sr export runs/sr8/latest.ckpt --output sr8.pt --half

    The run folder gets latest.ckpt (always complete), snapshot-*kimg.ckpt (kept for good), log.jsonl (losses;
    per checkpoint the PSNR of SR and bicubic on fixed training faces), a grid per checkpoint and, at the end,
    sr.pt. Ctrl-C stops after the current step and saves latest.ckpt first.
    """
    if ctx.invoked_subcommand is not None:
        if resume or any(v not in (None, ()) for v in options.values()):
            raise click.UsageError("training options go with `pulse train-sr`, not before a subcommand")
        return
    options["data"] = list(options["data"]) or None
    options["out"] = options.pop("output")
    if not (options["data"] or resume):
        raise click.UsageError("Missing option '--data' (or --resume a run)")
    command = "pulse " + shlex.join(sys.argv[1:])
    path = train_sr(options, resume=resume, command=command, report=say)
    say(f"SR model: {path}")


@train_sr_command.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@output_option(None, "SR model file to write.", file=True, required=True)
@click.option("--half", is_flag=True, help="Store weights as float16 (half the size).")
def export_command(checkpoint, output, half):
    """Write the SR model file (network, metadata) of a `pulse train-sr` checkpoint."""
    say(f"SR model: {export_sr_checkpoint(checkpoint, output, half=half)}")
