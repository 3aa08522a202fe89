"""``mailroom health``: the container health check, asking the worker in the same container."""

from __future__ import annotations

import click

from services.cli.app import main
from services.cli.common import Fail, load_settings, say
from services.runtime.health_probe import probe


class Unhealthy(Fail):
    """Exit status 1: what a container runtime reads as "unhealthy" (2 is reserved)."""

    exit_code = 1


@main.command()
@click.option(
    "--ready",
    is_flag=True,
    help="Ask whether the broker and the store are reachable (/readyz), not only whether "
    "the process runs (/healthz).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="The port the process serves its health on (default: MAILROOM_HEALTH_PORT).",
)
def health(ready: bool, port: int | None) -> None:
    """Ask the worker on this host (or in this container) whether it is alive or ready.

    Exit status 0 with one line when it is, 1 with the reason when it is not: what
    HEALTHCHECK and compose health checks expect.
    """
    try:
        settings = load_settings()
    except Fail as exc:
        raise Unhealthy(exc.message) from None
    port = settings.health_port if port is None else port
    if not port:
        raise Unhealthy("no health port to ask: give --port N or set MAILROOM_HEALTH_PORT")
    answer = probe(settings.health_host, port, "/readyz" if ready else "/healthz")
    if not answer.ok:
        raise Unhealthy(answer.text)
    say(answer.text)
