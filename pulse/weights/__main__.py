"""``python -m pulse.weights``: the `pulse weights` commands without the console script."""

from ..cli.weights import weights_cli

weights_cli(prog_name="python -m pulse.weights")
