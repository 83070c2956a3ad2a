"""The ``pulse`` command line: one thin click command per file over the package's library.

Commands load on first use, so ``pulse --help`` lists them without importing torch; ``COMMANDS`` gives each
one's module and the line ``pulse --help`` shows for it (a test keeps it the start of the command's own help).
"""

from __future__ import annotations

from importlib import import_module

import click

from .common import PulseGroup

COMMANDS = {  # name: (module, attribute, short help)
    "align": ("align", "align_command", "Find faces in photos and cut them out the way FFHQ did."),
    "demo": ("demo", "demo_command", "Try pulse in a browser: a local page to upsample a photo or an aligned LR face."),
    "eval": ("eval", "eval_command", "Evaluate pulse and the SR networks against bicubic on faces whose truth is known."),
    "restore": ("restore", "restore_command", "Enlarge whole photos, replacing each face by one that pulse or an SR network makes."),
    "run": ("run", "run", "Super-resolve aligned LR faces."),
    "sample": ("sample", "sample_command", "Random faces from a generator, as one grid image."),
    "train": ("train", "train_command", "Train a generator on aligned faces."),
    "train-encoder": ("train_encoder", "train_encoder_command",
                      "Train the latent encoder that starts the search next to the answer."),
    "train-sr": ("train_sr", "train_sr_command", "Train a feed-forward face super-resolver (SRResNet or SRGAN)."),
    "weights": ("weights", "weights_cli", "List, download, verify, import and convert generator and landmark weights."),
}


class LazyGroup(PulseGroup):
    """A group that imports a command's module only when that command runs (or shows its own help)."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(import_module(f".{module}", __name__), attribute)

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pulse")
def main():
    """pulse: face super-resolution by searching a generator's latent space (PULSE).

    It invents a plausible face that downscales to the input; it does not recover the true face.
    Never use its output to identify anyone.
    """
