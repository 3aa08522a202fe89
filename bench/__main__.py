"""``make bench``: Mailroom's speed and memory, each beside a baseline taken in the same run.

Nothing is asserted: the figures are printed as tables and written to ``var/bench.json``.
RabbitMQ and PostgreSQL (and Dovecot, for the IMAPS figures) are started on loopback and
stopped after; the Graph and EWS figures use the fake servers of ``tests/``, in process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench import (
    backpressure,
    big_mail,
    claim_check,
    corpus_rate,
    embedded,
    exchange,
    idle_poll,
    imap,
    parser_compare,
    push_latency,
    scaled,
)
from bench.procs import REPO
from bench.report import Results, machine, render, write_json


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    progress = Console(stderr=True)
    results = Results(machine(args.mails))
    results.machine["imap_mails"] = args.imap_mails
    results.machine["exchange_mails"] = args.exchange_mails
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp:
        progress.log(f"embedded pipeline, {args.mails} mails")
        embedded.measure(Path(tmp) / "embedded", args.mails, results)
        progress.log("scaled pipeline: starting RabbitMQ and PostgreSQL")
        scaled.measure(Path(tmp) / "scaled", args.mails, results)
        progress.log("back-pressure: the scaled pipeline with its parser slowed on purpose")
        backpressure.measure(Path(tmp) / "backpressure", results)
        if args.imap_mails:
            progress.log(f"IMAPS: Dovecot, RabbitMQ and PostgreSQL, {args.imap_mails} mails")
            imap.measure(Path(tmp) / "imap", args.imap_mails, results)
        progress.log("idle poll: IMAPS folders keeping 0, 10,000 and 100,000 handled mails")
        idle_poll.measure(Path(tmp) / "idle_poll", results)
        if args.exchange_mails:
            progress.log(f"Graph and EWS: fake servers over TLS, {args.exchange_mails} mails")
            exchange.measure(Path(tmp) / "exchange", args.exchange_mails, results)
        progress.log("push delivery: IMAP IDLE beside polling, delivery to request")
        push_latency.measure(Path(tmp) / "push", results)
        progress.log("one 50 MB mail through the scaled pipeline")
        big_mail.measure(Path(tmp) / "big", results)
    progress.log("claim check; parse + validate over the corpus")
    claim_check.measure(results)
    corpus_rate.measure(results)
    progress.log("fast-mail-parser beside Mailroom's parser over the corpus")
    parser_compare.measure(results)
    results.details["bench_seconds"] = time.perf_counter() - start
    render(results, _console())
    write_json(results, args.out)
    print(f"bench took {results.details['bench_seconds']:.0f} s; figures in {args.out}")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mails", type=int, default=1000, help="generated mails per pipeline")
    parser.add_argument(
        "--imap-mails", type=int, default=5000, help="mails in the IMAPS mailbox (0 skips it)"
    )
    parser.add_argument(
        "--exchange-mails",
        type=int,
        default=500,
        help="mails in the Graph and EWS mailboxes (0 skips them)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench.json")
    return parser.parse_args(argv)


def _console() -> Console:
    # Without a terminal rich would wrap at 80 columns; logs and CI have room for more.
    return Console() if sys.stdout.isatty() else Console(width=120)


if __name__ == "__main__":
    sys.exit(main())
