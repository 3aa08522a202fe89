"""The ``mailroom`` command. The only package that loads settings; it wires and delegates."""

from services.cli import failures, inspect, mailboxes, notifications, requests, run
from services.cli.app import main

__all__ = ["main", "failures", "inspect", "mailboxes", "notifications", "requests", "run"]
