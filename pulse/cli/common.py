"""What every command shares: how it talks to the user, its common options, and one exit-code policy.

Exit codes (README): 0 all done; 1 some inputs failed (each named); 2 nothing done: a bad option, no inputs,
no generator — any ``PulseError`` that reaches a command's top; 3 all done, but some results not within eps;
130 interrupted (Ctrl-C), with what was finished kept.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Callable

import click

from ..errors import EXIT_INTERRUPTED, EXIT_USAGE, Interrupted, PulseError
from ..progress import progress_bar

DEVICES = ("auto", "cpu", "cuda")


def say(message: str) -> None:
    """A line for the user, on stderr (stdout stays free for a command's data)."""
    click.echo(message, err=True)


def say_below_progress(message: str) -> None:
    """One line on stderr. On a terminal a progress bar holds the current line, so start a new one first;
    elsewhere (logs, pipes) the bar draws nothing there and the line stands alone."""
    click.echo(("\n" if sys.stderr.isatty() else "") + message, err=True)


class _ExitPolicy:
    """Lets a command simply raise ``PulseError``: one line "error: ...", exit 2 (``Interrupted`` or Ctrl-C: one
    line "interrupted: ...", exit 130)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Interrupted as err:
            say(f"interrupted: {err}")
            sys.exit(EXIT_INTERRUPTED)
        except KeyboardInterrupt:  # commands that keep finished work say how to go on through Interrupted
            say("interrupted: what was finished is kept")
            sys.exit(EXIT_INTERRUPTED)
        except PulseError as err:
            say(f"error: {err}")
            sys.exit(EXIT_USAGE)


class PulseCommand(_ExitPolicy, click.Command):
    """A command under the exit-code policy."""


class PulseGroup(_ExitPolicy, click.Group):
    """A command group under the exit-code policy; its commands are ``PulseCommand``s by default.

    As the top command it also says a bad option value in one line "error: ...", exit 2, like every other error,
    where click would print its usage block first."""

    command_class = PulseCommand

    def main(self, *args, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **extra)
        try:
            code = super().main(*args, standalone_mode=False, **extra)
        except click.UsageError as err:
            where = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            say(f"error: {err.format_message().rstrip('.')}{where}")
            sys.exit(EXIT_USAGE)
        except click.ClickException as err:
            say(f"error: {err.format_message()}")
            sys.exit(err.exit_code)
        except click.Abort:
            say("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


class Scale(click.ParamType):
    """A scale factor: a finite number of at least ``minimum`` (above 0 where it is 0); ``whole``: also a whole
    number (photo enlargement, evaluation sizes)."""

    name = "scale"

    def __init__(self, whole: bool = False, minimum: float = 0):
        self.whole, self.minimum = whole, minimum

    def convert(self, value, param, ctx):
        try:
            scale = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(scale) and scale > 0 and scale >= self.minimum):
            least = f"of at least {self.minimum:g}" if self.minimum else "above 0"
            self.fail(f"{value!r}: give a finite number {least}", param, ctx)
        if self.whole and not scale.is_integer():
            self.fail(f"{value!r}: give a whole number", param, ctx)
        return int(scale) if self.whole else scale


def scale_option(help: str, whole: bool = False, minimum: float = 0):
    """``--scale`` as every command spells and checks it (default 8)."""
    return click.option("--scale", default=8, show_default=True, type=Scale(whole, minimum), help=help)


def widths_callback(first: str):
    """A click callback for network widths given as "64,128,128": one positive whole number per level, ``first``'s
    first."""
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            widths = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of integers")
        if not widths or min(widths) < 1:
            raise click.BadParameter(f"{value!r}: give one positive width per level, {first} first")
        return widths
    return parse


def device_option(default: str | None = "auto", help: str = "Where the work runs: auto = CUDA if present, else CPU."):
    return click.option("--device", type=click.Choice(DEVICES), default=default, show_default=default is not None,
                        help=help)


def generator_option(command):
    return click.option("--generator", default=None, metavar="NAME|FILE|URL",
                        help="pulse's generator: a registry name, a generator file, a foreign one (NVlabs or "
                             "TensorFlow pickle, rosinality checkpoint; converted once) or an http(s) URL "
                             "[default: the bundled one].")(command)


def sr_model_option(command):
    return click.option("--sr-model", default=None, metavar="NAME|FILE",
                        help="The network of --method srresnet or srgan: a registry name or a file made by "
                             "`pulse train-sr` [default: the registry's for the method and scale].")(command)


def method_option(command):
    return click.option("--method", default="pulse", show_default=True,
                        type=click.Choice(["pulse", "srresnet", "srgan"]),
                        help="pulse: search a generator for faces that downscale to the input (several samples); "
                             "srresnet: one pass of the pixel-loss network (deterministic, fast, smooth); srgan: one "
                             "pass of the adversarially trained network (sharper); neither promises to downscale to "
                             "the input.")(command)


def method_line(upsampler, scale: float, options: dict) -> str:
    """What makes the faces, as a run's first line says it: the network, and for the search its steps and start."""
    name = Path(upsampler.model.source).name
    if upsampler.method != "pulse":
        return f"{upsampler.method} ({name})"
    opts = upsampler.search_options(scale, **options)
    start = (f"from encoder {Path(upsampler.encoder_for(scale).source).name}" if opts.init == "encoder"
             else "from random starts")
    steps = (f"up to {opts.steps} steps, each face stopping once within eps" if opts.early_stop
             else f"{opts.steps} steps")
    return f"searching {name} ({steps} {start})"


def network_for(method: str, generator, sr_model):
    """The network a command's --method uses: --generator for pulse, --sr-model for the feed-forward methods;
    the other one given is a usage error rather than silently ignored."""
    if method == "pulse":
        if sr_model is not None:
            raise PulseError("--sr-model names the network of --method srresnet or srgan; pulse searches --generator")
        return generator
    if generator is not None:
        raise PulseError(f"--generator names pulse's generator; give the {method} network with --sr-model")
    return sr_model


def _search_option_table():
    """(field of SearchOptions, click declarations, click keywords, help) for every setting a user may choose."""
    from ..resample import KERNELS
    from ..search import INITS, NOISE_MODES, PRECISIONS, SCHEDULES

    return (
        ("steps", ("--steps",), dict(type=click.IntRange(1)), "Search steps per batch"),
        ("eps", ("--eps",), dict(type=click.FloatRange(0, min_open=True)),
         "Success threshold on the LR mean squared error (images in [0, 1])"),
        ("eps_margin", ("--eps-margin",), dict(type=click.FloatRange(0, 1, max_open=True)),
         "The loss aims at (1 - margin) x eps so delivered images land within eps; 0 = reference PULSE"),
        ("loss", ("--loss",), dict(), "Weighted loss terms: L2, L1, CHARB (robust), GEOCROSS, e.g. "
         "100*L2+0.05*GEOCROSS"),
        ("learning_rate", ("--learning-rate",), dict(type=click.FloatRange(0, min_open=True)),
         "Peak Adam learning rate of the search's schedule"),
        ("schedule", ("--schedule",), dict(type=click.Choice(SCHEDULES)), "Learning-rate schedule over the steps"),
        ("noise", ("--noise",), dict(type=click.Choice(NOISE_MODES)),
         "Noise maps: the coarsest --noise-layers optimised with the latent (trainable), kept as drawn from the "
         "seed (fixed), or all zero"),
        ("trainable_noise_layers", ("--noise-layers",), dict(type=click.IntRange(0)),
         "How many noise maps (coarsest first) the search may change"),
        ("noise_lr_scale", ("--noise-lr-scale",), dict(type=click.FloatRange(0, min_open=True)),
         "Learning rate of the trainable noise maps as a multiple of the latent's; 1 = PULSE's one rate"),
        ("tile_latent", ("--tile-latent/--no-tile-latent",), dict(), "One latent vector for every style layer"),
        ("early_stop", ("--early-stop/--no-early-stop",), dict(), "Stop each face once a step's result is within (1 - eps margin) x eps; the rest of the batch goes on"),
        ("precision", ("--precision",), dict(type=click.Choice(PRECISIONS)),
         "bf16: the generator runs under autocast (faster on recent GPUs); losses stay fp32"),
        ("degradation", ("--degradation",), dict(type=click.Choice(KERNELS)),
         "How the LR inputs were made: the downscale of the search's consistency loss and eps check. bicubic = "
         "PULSE's (antialiased); box = block averages (mosaics); bilinear = antialiased triangle"),
        ("init", ("--init",), dict(type=click.Choice(INITS)),
         "Where each search starts: encoder = the latent a trained encoder predicts from the input (`pulse "
         "train-encoder`; far fewer steps), random = a random point as PULSE"),
        ("spread", ("--spread",), dict(type=click.FloatRange(0)),
         "With --init encoder: how far each sample's seed moves its start from the encoder's latent (samples differ)"),
        ("guided_rows", ("--guided-rows",), dict(type=click.IntRange(0)),
         "With --init encoder: samples after the first keep this many of the coarsest style rows (pose, face shape) "
         "from the encoder's latent and draw the finer ones from their own seed, as a random start does, so they "
         "differ; the first sample stays the encoder's face"),
    )


INIT_DEFAULT = "encoder when one is installed for the generator and scale (its settings then apply), else random"


def search_options(command):
    """The search's settings as options, one set for run, restore and eval: each one not given is the
    generator's recommended setting (its file's ``search_defaults``), else the reference PULSE's. The command
    receives them under SearchOptions' field names, None where not given (``given_search_options``)."""
    from ..search import SearchOptions

    reference = SearchOptions()
    for field, decls, keywords, help in reversed(_search_option_table()):
        default = getattr(reference, field)
        shown = ("on" if default else "off") if isinstance(default, bool) else f"{default:g}" if isinstance(
            default, float) else default
        shown = INIT_DEFAULT if field == "init" else f"the encoder's or generator's recommended, else {shown}"
        command = click.option(*decls, field, default=None, **keywords, help=f"{help} [default: {shown}].")(command)
    return click.option("--encoder", default=None, metavar="NAME|FILE",
                        help="The latent encoder searches start from (--init encoder): a registry name or a file of "
                             "`pulse train-encoder` [default: the installed one made for the generator and scale, if "
                             "any].")(command)


def given_search_options(params: dict) -> dict:
    """Takes the search options out of a command's parameters: {field: value} of those given (``--encoder`` stays)."""
    given = {row[0]: params.pop(row[0]) for row in _search_option_table()}
    return {field: value for field, value in given.items() if value is not None}


def refuse_search_options(ctx: click.Context, method: str, names) -> None:
    """A search option given on the command line with a method that does not search is a usage error, not
    silently ignored."""
    given = [param.opts[0] for param in ctx.command.params if param.name in names
             and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE]
    if method != "pulse" and given:
        raise PulseError(f"{', '.join(given)}: search option(s); --method {method} does not search")


def output_option(default: str | None, help: str, file: bool = False, required: bool = False):
    """``--output`` (``--out`` still accepted, deprecated) as a Path."""
    return click.option("--output", "--out", "output", default=default, required=required,
                        show_default=default is not None,
                        type=click.Path(dir_okay=not file, file_okay=file, path_type=Path),
                        help=help)


def shard_option(command):
    return click.option("--shard", default=None, metavar="I/N",
                        help="Take inputs I, I+N, I+2N, ... of the folder: N runs (on N machines, or N GPUs) share "
                             "one batch and one output folder; 0/4 is the first of four.")(command)


def verbose_option(command):
    return click.option("-v", "--verbose", is_flag=True,
                        help="Also name each file of the input folder that was passed over, and why.")(command)


def find_inputs(input_path, verbose: bool) -> list[Path]:
    """The images ``--input`` names; what a folder held besides is counted in one line (named with -v)."""
    from ..imageio import find_images

    found = find_images(input_path)
    say_passed_over(found.skipped, input_path, verbose)
    return found.images


def say_passed_over(skipped: list, input_path, verbose: bool) -> None:
    if skipped:
        say(f"note: passed over {len(skipped)} file(s) in {input_path} that are not accepted images"
            + ("" if verbose else " (-v names them)"))
        for path, reason in skipped if verbose else ():
            say(f"skipped: {path}: {reason}")


def for_each_input(files: list[Path], label: str, work: Callable[[Path, Callable[[int, int], None]], None],
                   on_error: Callable[[Path, PulseError], None] = lambda path, err: None) -> int:
    """The loop of commands that take inputs one at a time: a progress bar; ``work(path, on_step)`` per input,
    its warnings said below the bar, its ``PulseError`` one line "error: ..." (and ``on_error``) while the batch
    goes on. Returns how many inputs failed."""
    failed = 0
    with progress_bar(len(files), label) as bar:
        for path in files:
            on_step = lambda step, total, name=path.name: bar.update(0, f"{name}: step {step}/{total}")  # noqa: E731
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    work(path, on_step)
                except PulseError as err:
                    say_below_progress(f"error: {err}")
                    on_error(path, err)
                    failed += 1
            for message in dict.fromkeys(str(w.message) for w in caught):
                say_below_progress(f"warning: {message}")
            bar.update(1, path.name)
    return failed
