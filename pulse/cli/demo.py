"""`pulse demo`: serve a page on localhost to try pulse on a photo or an aligned LR face."""

from __future__ import annotations

import click

from .common import PulseCommand, device_option, say


@click.command("demo", cls=PulseCommand)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default lets only this machine in; another (0.0.0.0: every "
                   "interface) lets anyone who can reach this machine use it, and a warning says so.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--generator", default=None, metavar="NAME|FILE",
              help="The page's first generator: a registry name or generator file (default: the bundled one); the "
                   "page also offers the registry's other installed generators.")
@device_option()
@click.option("--time-limit", default=300.0, show_default=True, type=click.FloatRange(1),
              help="Seconds one request may work before its search is stopped.")
@click.option("--queue-size", default=8, show_default=True, type=click.IntRange(1),
              help="Requests that may wait while one search runs; more are turned away.")
@click.option("--max-upload", default=20.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Largest upload, in MB (of 2**20 bytes); fractions allowed.")
def demo_command(host, port, generator, device, time_limit, queue_size, max_upload):
    """Try pulse in a browser: a local page to upsample a photo or an aligned LR face.

    \b
    Examples:
      pulse demo
      pulse demo --port 8000 --generator stylegan2-ffhq-256 --device cuda

    Upload a whole photo (its faces are found, aligned, searched and pasted back, as `pulse restore`) or an
    aligned LR face (as `pulse run`); choose scale, samples, steps, seed and generator; watch the search and
    compare LR | bicubic | samples with their LR-PSNR; download the images and a JSON report. Uploads get the
    CLI's checks and messages; one search runs at a time behind a queue, each for at most --time-limit
    seconds. Needs the demo extra: pip install "pulse[demo]". Ctrl-C stops it.
    """
    from ..demo import Limits, is_loopback, serve

    if not is_loopback(host):
        say(f"warning: --host {host} serves the demo beyond this machine: anyone who can reach it on port {port} "
            "can upload photos and use its CPU/GPU; there is no login")
    serve(host, port, generator, device, Limits(time_limit, queue_size, max_upload),
          on_ready=lambda url: say(f"pulse demo: {url} (Ctrl-C stops it)"))
