"""``python -m bench.slow_parser PAUSE_MS [OPTIONS]``: ``mailroom worker parser [OPTIONS]``,
slowed on purpose by a fixed pause before each mail it parses.

A bench-only entry: it wraps the parser worker's ``parse`` in this process and then runs the
usual command line, so nothing else about the worker changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from services.cli import main
from services.parser import worker


def slowed(parse: Callable[..., Any], pause_s: float) -> Callable[..., Any]:
    """``parse``, after sleeping ``pause_s`` seconds."""

    @wraps(parse)
    def paused(*args: Any, **kwargs: Any) -> Any:
        time.sleep(pause_s)
        return parse(*args, **kwargs)

    return paused


def run(argv: list[str]) -> None:
    pause_ms, *options = argv
    # The worker's handler looks ``parse`` up in its module at each mail.
    worker.parse = slowed(worker.parse, float(pause_ms) / 1000)  # type: ignore[attr-defined]
    main(["worker", "parser", *options], prog_name="mailroom")


if __name__ == "__main__":
    run(sys.argv[1:])
