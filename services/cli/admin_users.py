"""``mailroom admin create-user``: an admin of the web page."""

from __future__ import annotations

import sys

import click

from services.cli.common import Fail, explained, load_settings, open_store, say
from services.runtime.clock import SystemClock
from services.web.passwords import AdminUsers, checked_username


@click.command("create-user")
@click.argument("username")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from one line on stdin instead of asking for it.",
)
def create_user(username: str, password_stdin: bool) -> None:
    """Create an admin user of the web page, with a password of 12 characters or more."""
    with explained():
        name = checked_username(username)
        store = open_store(load_settings())
        try:
            password = _password_from_stdin() if password_stdin else _password_asked()
            AdminUsers(store, SystemClock()).create(name, password)
        finally:
            store.dispose()
    say(f"admin user {name} created")


def _password_from_stdin() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise Fail("no password on stdin: give it as the first line of stdin")
    return line


def _password_asked() -> str:
    if not sys.stdin.isatty():
        raise Fail("no terminal to ask for the password: give it on stdin with --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
