"""The ``mailroom`` group; each module of this package adds its commands to it."""

from __future__ import annotations

import logging
from typing import Any

import click

from services.safe_text import json_text, shown

_WANTS_JSON = "mailroom.wants_json"


class MailroomGroup(click.Group):
    """The root group. An error of a ``--json`` command is also a JSON object on stdout,
    ``{"error": ..., "hint": ...}``, so a script reading stdout always reads JSON; the line
    on stderr and the exit status stay as they are."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = args[: args.index("--")] if "--" in args else args
        ctx.meta[_WANTS_JSON] = "--json" in given
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            # A command whose JSON already says what went wrong (``inspect``) prints no second
            # document.
            if ctx.meta.get(_WANTS_JSON) and not getattr(exc, "json_written", False):
                click.echo(json_text(error_object(exc)))
            raise


def error_object(exc: click.ClickException) -> dict[str, str | None]:
    """What went wrong, and what to do about it when the message says so apart."""
    message = shown(exc.format_message(), keep_lines=True)
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx else "mailroom"
        return {"error": message, "hint": f"`{command} --help` shows the usage"}
    error, sep, hint = message.partition("; ")
    if "\n" in message or not sep:  # several problems, each naming its own fix
        return {"error": message, "hint": None}
    return {"error": error, "hint": hint}


class ShownFormatter(logging.Formatter):
    """Log lines quote mail and servers: their control and bidi characters are escaped.

    A message is one line, its line breaks escaped too, so that a file name or subject
    holding ``\n2026-12-05 ERROR ...`` cannot add a line of its own to the log; only a
    traceback keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return shown(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return shown(super().formatException(ei), keep_lines=True)

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return shown(super().formatStack(stack_info), keep_lines=True)


@click.group(cls=MailroomGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Mailroom: turns mail in help-desk mailboxes into requests; never loses a mail."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    handler = logging.StreamHandler()
    handler.setFormatter(ShownFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
