"""The short form of ``make chaos``: kills and outages cost no mail, double none, and
dead-letter none; every worker stops on SIGTERM."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from chaos.report import render
from chaos.scenario import Scenario, run

SHORT = Scenario(
    mails=600,
    mailboxes=2,
    per_stage=2,
    pollers=2,
    rabbitmq_down_s=3.0,
    postgres_down_s=2.0,
    deadline_s=600.0,
)


def test_kills_and_outages_of_rabbitmq_and_postgresql_lose_double_and_dead_letter_nothing(
    tmp_path: Path,
) -> None:
    report = run(SHORT, tmp_path, print)
    out = io.StringIO()
    render(report, Console(file=out, width=120))
    print(out.getvalue())

    assert report.not_injected == [], out.getvalue()
    assert [f.name for f in report.faults] == [
        "RabbitMQ restarted",
        "PostgreSQL restarted",
        "RabbitMQ killed (-9)",
        "PostgreSQL killed (-9)",
    ]
    assert all(f.recovered_s is not None for f in report.faults), out.getvalue()
    assert report.worker_kills >= 3, out.getvalue()
    assert report.problems == [], out.getvalue()
    audit = report.audit
    assert audit is not None
    assert audit.mails == SHORT.mails
    assert (audit.lost, audit.doubled, audit.two_outcomes, audit.falsely_dead_lettered) == (
        0,
        0,
        0,
        0,
    ), out.getvalue()
    assert audit.in_error_folders == 0
    assert report.slow_to_stop == [], out.getvalue()
