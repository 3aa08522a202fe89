"""The ``mailroom`` command. The only package that loads settings; it wires and delegates."""

from services.cli import failures, mailboxes, notifications, requests, run
from services.cli.app import main

__all__ = ["main", "failures", "mailboxes", "notifications", "requests", "run"]
