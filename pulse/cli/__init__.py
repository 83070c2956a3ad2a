"""The ``pulse`` command line: one thin click command per file over the package's library."""

from __future__ import annotations

import click

from .align import align_command
from .common import PulseGroup
from .eval import eval_command
from .restore import restore_command
from .run import run
from .sample import sample_command
from .train import train_command
from .weights import weights_cli


@click.group(cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pulse")
def main():
    """pulse: face super-resolution by searching a generator's latent space (PULSE).

    It invents a plausible face that downscales to the input; it does not recover the true face.
    Never use its output to identify anyone.
    """


for command in (run, align_command, restore_command, train_command, sample_command, eval_command, weights_cli):
    main.add_command(command)
