"""The ``pulse`` command line: thin click commands over the package's modules."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pulse")
def main():
    """pulse: face super-resolution by searching a generator's latent space (PULSE).

    It invents a plausible face that downscales to the input; it does not recover the true face.
    Never use its output to identify anyone.
    """
