"""Embedded mode (``mailroom run --once``: memory broker, SQLite) vs stdlib parsing alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.procs import Finished, run_measured, tail
from bench.report import Figure, Results
from bench.room import Room, mailroom

PARSE_BASELINE = "stdlib email parse of the same Maildir (policy.default, every part decoded)"


def measure(workdir: Path, count: int, results: Results) -> None:
    """Run the baseline, then Mailroom, over the same ``count`` mails, each as one process."""
    room = Room(workdir, "memory://", f"sqlite:///{workdir / 'var' / 'mailroom.db'}")
    room.prepare(count)
    parse = [sys.executable, "-m", "bench.stdlib_parse", str(room.maildir / "new")]
    baseline = run_measured(parse, env=room.env)
    run = run_measured(mailroom("run", "--once", "--json"), env=room.env, cwd=room.workdir)
    summary = _summary(run)
    done = summary["fetched"] - summary["in_flight"] if summary else 0
    results.figures += _figures(done, int(baseline.stdout or 0), run, baseline)
    results.notes += _notes(count, run, summary)
    results.details["embedded"] = _details(run, baseline, summary)


def _summary(run: Finished) -> dict[str, Any] | None:
    if run.returncode != 0:
        return None
    counts = json.loads(run.stdout)
    return {k: v for k, v in counts.items() if isinstance(v, int)}


def _figures(done: int, parsed: int, run: Finished, base: Finished) -> list[Figure]:
    ok = run.returncode == 0
    return [
        Figure(
            "embedded: mails/s, whole `run --once` process",
            PARSE_BASELINE + ", whole process",
            "mails/s",
            done / run.seconds if ok else None,
            parsed / base.seconds,
        ),
        Figure(
            "embedded: peak RSS of `run --once`",
            "peak RSS of the stdlib parse process",
            "MiB",
            run.peak_rss_mib if ok else None,
            base.peak_rss_mib,
        ),
    ]


def _notes(count: int, run: Finished, summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return [f"PROBLEM: `mailroom run --once` exited {run.returncode}:\n{tail(run.stderr)}"]
    outcomes = ", ".join(f"{k} {v}" for k, v in summary.items() if k != "fetched")
    notes = [f"embedded: {summary['fetched']} of {count} mails fetched; {outcomes}"]
    if summary["fetched"] != count or summary["in_flight"]:
        notes.append(
            f"PROBLEM: embedded run left {count - summary['fetched']} unfetched, "
            f"{summary['in_flight']} in flight"
        )
    return notes


def _details(run: Finished, base: Finished, summary: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "run_seconds": run.seconds,
        "run_peak_rss_mib": run.peak_rss_mib,
        "run_returncode": run.returncode,
        "summary": summary,
        "baseline_seconds": base.seconds,
        "baseline_peak_rss_mib": base.peak_rss_mib,
    }
