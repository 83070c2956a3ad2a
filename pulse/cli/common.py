"""What every command shares: how it talks to the user."""

from __future__ import annotations

import click


def say(message: str) -> None:
    """A line for the user, on stderr (stdout stays free for a command's data)."""
    click.echo(message, err=True)
