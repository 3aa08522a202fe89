"""The ``mailroom`` command. The only package that loads settings; it wires and delegates."""

from services.cli import (
    admin_web,
    failures,
    health_check,
    inspect,
    mailboxes,
    migrate,
    notifications,
    oauth,
    requests,
    run,
)
from services.cli.app import main

__all__ = [
    "main",
    "admin_web",
    "failures",
    "health_check",
    "inspect",
    "mailboxes",
    "migrate",
    "notifications",
    "oauth",
    "requests",
    "run",
]
