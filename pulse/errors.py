"""How things go wrong for users: one exception with a one-line message, the exit codes of batch commands, and
how a batch command tells the user about one input while its progress bar runs."""

import sys

import click


class PulseError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and carries on with other inputs."""


# Exit codes shared by every command that works through a batch of inputs (documented in README).
EXIT_OK = 0  # every input processed, every result within eps
EXIT_INPUT_ERRORS = 1  # some inputs could not be processed (named on stderr and in the report)
EXIT_USAGE = 2  # bad options, no inputs, no generator: nothing processed
EXIT_NOT_CONSISTENT = 3  # every input processed, but some results did not get within eps


def say_below_progress(message: str) -> None:
    """One line on stderr. On a terminal a progress bar holds the current line, so start a new one first;
    elsewhere (logs, pipes) the bar draws nothing there and the line stands alone."""
    click.echo(("\n" if sys.stderr.isatty() else "") + message, err=True)
