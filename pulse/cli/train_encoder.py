"""`pulse train-encoder` (with `pulse train-encoder export`): train the latent encoder of a generator.

Training options default to None here so that ``--resume`` can tell what was given on this command line
(overrides) from what should come from the checkpoint; the documented defaults live in ``EncoderTrainConfig``.
"""

from __future__ import annotations

import shlex
import sys

import click

from ..search import parse_search_defaults
from ..training.encoder_loop import EncoderTrainConfig, export_encoder_checkpoint, train_encoder
from .common import PulseGroup, device_option, output_option, say, widths_callback

DEFAULTS = EncoderTrainConfig(generator="-", out="-")


def _default(name: str) -> str:
    value = getattr(DEFAULTS, name)
    return f"[default: {','.join(map(str, value)) if isinstance(value, list) else value}]"


def _search_defaults(ctx, param, items):
    if not items:
        return None
    try:
        return parse_search_defaults(items)
    except ValueError as err:
        raise click.BadParameter(str(err))




SEARCH_DEFAULT_HELP = ("Search setting recommended from this encoder's start (repeatable), e.g. steps=20; they apply "
                       "over the generator's own, and a user's option wins over both.")


@click.group("train-encoder", cls=PulseGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--generator", help="The generator (registry name or file) the encoder starts searches of.")
@output_option(None, "Run folder: checkpoint, log, encoder.pt.")
@click.option("--scale", type=int, help=f"The enlargement: LR size = generator resolution / scale {_default('scale')}")
@click.option("--channels", callback=widths_callback("the LR size's"),
              help=f"Widths at the LR size, then per halving {_default('channels')}")
@click.option("--hidden", type=int, help=f"Width of the head's hidden layer {_default('hidden')}")
@click.option("--batch", type=int, help=f"Generated faces per step {_default('batch')}")
@click.option("--lr", type=float, help=f"Adam learning rate {_default('lr')}")
@click.option("--kimg", type=float, help=f"Training length in thousands of generated faces {_default('kimg')}")
@click.option("--real-data", multiple=True, type=click.Path(),
              help="Aligned real faces (folder, zip shard or image; repeatable) for the LR-consistency term.")
@click.option("--real-weight", type=float,
              help="Weight of the real faces' LR consistency through the frozen generator, 0 for none [default: 0]")
@click.option("--real-hr-weight", type=float,
              help="Weight of the real faces' reconstruction (pixel L1 of the face the encoder's latent draws "
                   "against the real face), 0 for none [default: 0]")
@click.option("--real-batch", type=int, help=f"Real faces per step {_default('real_batch')}")
@click.option("--init", type=click.Path(dir_okay=False, exists=True),
              help="Start from this encoder file's network (fine-tuning; same generator, its architecture).")
@click.option("--search-default", "search_defaults", multiple=True, metavar="FIELD=VALUE", callback=_search_defaults,
              help=SEARCH_DEFAULT_HELP)
@click.option("--seed", type=int, help=f"Random seed {_default('seed')}")
@click.option("--checkpoint-every", type=float, help=f"kimg between checkpoints {_default('checkpoint_every')}")
@click.option("--log-every", type=float, help=f"kimg between log lines {_default('log_every')}")
@device_option(default=None, help="[default: auto]")
@click.option("--resume", type=click.Path(dir_okay=False),
              help="Continue exactly from a checkpoint (runs/NAME/latest.ckpt); its options apply unless given.")
@click.pass_context
def train_encoder_command(ctx, resume, **options):
    """Train the latent encoder that starts the search next to the answer.

    It learns, from the generator's own faces (no data set needed), to map an LR face to the latent the search
    optimises; `pulse run`, `restore`, `eval`, the demo and the API then start each search there (--init encoder)
    and need far fewer steps.

    \b
    Examples:
      pulse train-encoder --generator pulse-faces-128 --scale 8 --output runs/enc8
      pulse train-encoder --resume runs/enc8/latest.ckpt
      pulse train-encoder --generator pulse-faces-128 --init enc8.pt --real-data faces/ --real-hr-weight 1 ...
      pulse train-encoder export runs/enc8/latest.ckpt --output enc8.pt --half --search-default steps=20

    The run folder gets latest.ckpt (always complete), log.jsonl (loss; per checkpoint the cosine to the true
    latent and the LR-PSNR of the encoder's own face on held-out draws) and, at the end, encoder.pt. Ctrl-C stops
    after the current step and saves latest.ckpt first.
    """
    if ctx.invoked_subcommand is not None:
        if resume or any(v not in (None, ()) for v in options.values()):
            raise click.UsageError("training options go with `pulse train-encoder`, not before a subcommand")
        return
    options["real_data"] = list(options["real_data"]) or None
    options["out"] = options.pop("output")
    if not (options["generator"] or resume):
        raise click.UsageError("Missing option '--generator' (or --resume a run)")
    command = "pulse " + shlex.join(sys.argv[1:])
    say(f"encoder: {train_encoder(options, resume=resume, command=command, report=say)}")


@train_encoder_command.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@output_option(None, "Encoder file to write.", file=True, required=True)
@click.option("--half", is_flag=True, help="Store weights as float16 (half the size).")
@click.option("--search-default", "search_defaults", multiple=True, metavar="FIELD=VALUE", callback=_search_defaults,
              help=SEARCH_DEFAULT_HELP + " Given: they replace the run's.")
def export_command(checkpoint, output, half, search_defaults):
    """Write the encoder file (network, its generator's sha256, scale, search settings) of a checkpoint."""
    say(f"encoder: {export_encoder_checkpoint(checkpoint, output, search_defaults, half=half)}")
