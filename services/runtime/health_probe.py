"""Asking a process's health endpoint whether it is alive or ready: the container health
check (``mailroom health``), which needs no tool the image would not otherwise hold."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import NamedTuple

#: Addresses that mean "every interface" when listening; a probe asks the loopback instead.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class Answer(NamedTuple):
    ok: bool
    #: One line: the endpoint's own words ("ready", "not ready: ..."), or why none came.
    text: str


def probe_address(listen_host: str) -> str:
    """The address to ask, for a process listening on ``listen_host``."""
    host = _WILDCARDS.get(listen_host, listen_host)
    return f"[{host}]" if ":" in host else host


def probe(listen_host: str, port: int, path: str, *, timeout_s: float = 5.0) -> Answer:
    """GET ``path`` from the health endpoint on ``port``. Never raises: a refused
    connection, a timeout or a non-200 answer is ``ok=False`` with the reason."""
    host = probe_address(listen_host)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout_s) as answer:
            return Answer(True, _first_line(answer.read()) or "ok")
    except urllib.error.HTTPError as refused:
        return Answer(False, _first_line(refused.read()) or f"HTTP status {refused.code}")
    except urllib.error.URLError as exc:
        return Answer(False, f"no answer on {host}:{port}: {_reason(exc.reason)}")
    except (OSError, ValueError) as exc:  # a timeout while reading; a malformed answer
        return Answer(False, f"no answer on {host}:{port}: {_reason(exc)}")


def _first_line(body: bytes) -> str:
    lines = body.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:300] if lines else ""


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__
