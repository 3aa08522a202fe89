"""The chaos run's figures as tables: the audit, each fault's recovery, shutdown times."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from chaos.scenario import STOP_WITHIN_S, Report


def render(report: Report, console: Console) -> None:
    s = report.scenario
    console.print(
        f"chaos: {s.mails} mails over {s.mailboxes} IMAPS mailboxes, {s.pollers} pollers and "
        f"{s.per_stage} workers per stage on RabbitMQ + PostgreSQL; {report.worker_kills} "
        f"workers killed with -9; done in {report.seconds:.0f} s"
    )
    console.print(_audit(report))
    console.print(_faults(report))
    slowest = max((t for t in report.stop_seconds.values() if t is not None), default=0.0)
    console.print(
        f"SIGTERM: {len(report.stop_seconds)} workers stopped, the slowest in {slowest:.1f} s "
        f"(limit {STOP_WITHIN_S:g} s); too slow: {', '.join(report.slow_to_stop) or 'none'}"
    )
    for problem in [*report.not_injected, *report.problems]:
        console.print(f"PROBLEM: {problem}", markup=False)
    console.print("chaos run PASSED" if report.passed else "chaos run FAILED")


def _audit(report: Report) -> Table:
    table = Table(title="every mail, audited against the mailboxes (all must be 0)")
    for column in ("mails", "with outcome", "lost", "doubled", "two outcomes", "falsely DLQ'd"):
        table.add_column(column, justify="right")
    table.add_column("error folders", justify="right")
    a = report.audit
    if a is None:
        table.add_row(*["?"] * 7)
        return table
    table.add_row(
        *map(
            str,
            (
                a.mails,
                a.with_outcome,
                a.lost,
                a.doubled,
                a.two_outcomes,
                a.falsely_dead_lettered,
                a.in_error_folders,
            ),
        )
    )
    return table


def _faults(report: Report) -> Table:
    table = Table(title="faults, and how long the pipeline took to recover")
    table.add_column("fault")
    table.add_column("server down, s", justify="right")
    table.add_column("first new outcome after it was back, s", justify="right")
    for fault in report.faults:
        table.add_row(fault.name, _seconds(fault.down_s), _seconds(fault.recovered_s))
    return table


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
