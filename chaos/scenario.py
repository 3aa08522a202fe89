"""One chaos run from nothing: servers, mailboxes, workers, faults, then the audit.

Dovecot, RabbitMQ and PostgreSQL are started here on loopback ports of their own (the run
restarts and kills them, so they are never shared) and stopped at the end.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from bench.imap import imaps_mailbox
from bench.mailgen import make_mixed_mail
from bench.procs import REPO
from bench.room import Room, helpdesk_settings
from chaos.audit import Audit, MailboxContent, audit, read_mailbox
from chaos.faults import Fault, ServerFault, WorkerKiller, inject, outage

sys.path.insert(0, str(REPO / "tests"))
from mailservers import Dovecot  # noqa: E402  (tests/ is not a package)
from servers import PostgreSQL, RabbitMQ  # noqa: E402

PASSWORD = "chaos-secret"
WORK_STAGES = ("parser", "validator", "router", "notifier")
#: A worker must be gone this long after SIGTERM.
STOP_WITHIN_S = 10.0


@dataclass(frozen=True)
class Scenario:
    mails: int = 3000
    mailboxes: int = 2
    #: Workers per stage for parser, validator, router and notifier.
    per_stage: int = 2
    pollers: int = 2
    #: A worker is killed every so many seconds, drawn between these two.
    kill_every_s: tuple[float, float] = (3.0, 5.0)
    rabbitmq_down_s: float = 13.0
    postgres_down_s: float = 5.0
    #: Progress (share of mails with an outcome) at which each server fault is injected.
    fault_at: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
    deadline_s: float = 900.0
    seed: int = 1


@dataclass
class Report:
    scenario: Scenario
    seconds: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    not_injected: list[str] = field(default_factory=list)
    worker_kills: int = 0
    #: Worker name -> seconds it took to exit after SIGTERM (None: it had to be killed).
    stop_seconds: dict[str, float | None] = field(default_factory=dict)
    exited_early: dict[str, int] = field(default_factory=dict)
    audit: Audit | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def slow_to_stop(self) -> list[str]:
        return [n for n, s in self.stop_seconds.items() if s is None or s > STOP_WITHIN_S]

    @property
    def passed(self) -> bool:
        clean = self.audit is not None and self.audit.clean
        return clean and not (self.not_injected or self.slow_to_stop or self.problems)


def run(scenario: Scenario, workdir: Path, say: Callable[[str], None]) -> Report:
    """Run ``scenario`` in ``workdir``; ``say`` gets one line per step."""
    report = Report(scenario)
    with ExitStack() as stack:
        say("starting Dovecot, RabbitMQ and PostgreSQL")
        dovecot = _started(stack, Dovecot.start(workdir / "dovecot"))
        rabbitmq = _started(stack, RabbitMQ.start(workdir / "rabbitmq"))
        postgres = _started(stack, PostgreSQL.start(workdir / "postgres"))
        say(f"delivering {scenario.mails} mails into {scenario.mailboxes} IMAPS mailboxes")
        users = deliver(dovecot, scenario.mails, scenario.mailboxes)
        room = Room(workdir / "room", rabbitmq.new_vhost("chaos"), postgres.new_database("chaos"))
        stack.callback(room.stop_workers)
        room.apply(imaps_settings(dovecot, users))
        faults = _server_faults(rabbitmq, postgres, scenario)
        _drive(room, postgres.conninfo("chaos"), faults, scenario, report, say)
        say("stopping every worker with SIGTERM")
        report.stop_seconds = _stop_all(room)
        say("auditing every mail against the mailboxes")
        with psycopg.connect(postgres.conninfo("chaos"), autocommit=True) as db:
            report.audit = audit(read_mailboxes(dovecot, users), db)
    return report


# -- setting up ----------------------------------------------------------------------------


def _started(stack: ExitStack, server: Any) -> Any:
    stack.callback(server.stop)
    return server


def deliver(dovecot: Dovecot, mails: int, mailboxes: int, prefix: str = "chaos") -> list[str]:
    """Split ``mails`` generated mails over ``mailboxes`` new Dovecot users, named
    ``PREFIXn@helpdesk.example``; each mailbox gets its own Message-IDs. Returns the users."""
    users = [f"{prefix}{n}@helpdesk.example" for n in range(1, mailboxes + 1)]
    for n, user in enumerate(users):
        dovecot.add_user(user, PASSWORD)
        count = len(range(n, mails, mailboxes))
        for first in range(0, count, 500):
            raws = [make_mixed_mail(i, seed=n + 1) for i in range(first, min(first + 500, count))]
            dovecot.deliver_many(user, raws)
    return users


def imaps_settings(dovecot: Dovecot, users: list[str]) -> dict[str, Any]:
    """One help desk polling every user's inbox over IMAPS every 3 s."""
    boxes = [
        imaps_mailbox(dovecot, mailbox_of(user), user, PASSWORD)
        | {
            "fetch_every_minutes": 0.05,
            "error_folder": {"enabled": True, "name": "Errors", "stop_after": 100_000},
        }
        for user in users
    ]
    settings = helpdesk_settings(boxes[0], max_attachment_mb=10)
    settings["helpdesks"][0]["mailboxes"] = boxes
    return settings


def mailbox_of(user: str) -> str:
    """The name of the mailbox polling ``user``."""
    return user.split("@")[0]


def _server_faults(rabbitmq: RabbitMQ, postgres: PostgreSQL, s: Scenario) -> list[ServerFault]:
    return [
        ServerFault(
            "RabbitMQ restarted",
            outage(rabbitmq.stop_node, rabbitmq.start_node, s.rabbitmq_down_s),
        ),
        ServerFault(
            "PostgreSQL restarted",
            outage(postgres.stop_server, postgres.start_server, s.postgres_down_s),
        ),
        ServerFault("RabbitMQ killed (-9)", outage(rabbitmq.kill_node, rabbitmq.start_node, 1)),
        ServerFault(
            "PostgreSQL killed (-9)", outage(postgres.kill_server, postgres.start_server, 1)
        ),
    ]


def _worker_names(scenario: Scenario) -> dict[str, str]:
    return worker_names(
        {"poller": scenario.pollers} | dict.fromkeys(WORK_STAGES, scenario.per_stage)
    )


def worker_names(counts: dict[str, int]) -> dict[str, str]:
    """The stage of each worker to start, by its name (``parser-1``, ``parser-2``...)."""
    return {f"{stage}-{n}": stage for stage, count in counts.items() for n in range(1, count + 1)}


# -- the run ---------------------------------------------------------------------------------


def _drive(
    room: Room,
    conninfo: str,
    faults: list[ServerFault],
    scenario: Scenario,
    report: Report,
    say: Callable[[str], None],
) -> None:
    """Start the workers, kill them and the servers as planned, until every mail is done."""
    names = _worker_names(scenario)
    for name, stage in names.items():
        room.start_worker(stage, name)
    killer = WorkerKiller(room, names, scenario.kill_every_s, random.Random(scenario.seed))
    start = time.monotonic()
    plan = list(zip(scenario.fault_at, faults, strict=False))
    done = 0
    with _killing(killer):
        while done < scenario.mails and time.monotonic() - start < scenario.deadline_s:
            done = _outcomes(conninfo, done)
            _note_progress(report.faults, done)
            if plan and done >= plan[0][0] * scenario.mails:
                _, fault = plan.pop(0)
                say(f"{done}/{scenario.mails} mails done: {fault.name}")
                report.faults.append(inject(fault, partial(_outcomes, conninfo, done)))
            time.sleep(0.2)
            _check_workers(room, names, killer, report)
    report.worker_kills = killer.kills
    report.seconds = time.monotonic() - start
    _note_progress(report.faults, _outcomes(conninfo, done))
    report.not_injected = [f"{f.name}: the pipeline finished first" for _, f in plan]
    if done < scenario.mails:
        report.problems.append(f"only {done} of {scenario.mails} mails done after the deadline")


@contextlib.contextmanager
def _killing(killer: WorkerKiller) -> Iterator[None]:
    killer.start()
    try:
        yield
    finally:
        killer.stop()


def _outcomes(conninfo: str, last: int) -> int:
    """Mails with an outcome; the last count while PostgreSQL is down."""
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=2) as db:
            row = db.execute("SELECT count(*) FROM mail_outcomes WHERE outcome <> 'routing'")
            found = row.fetchone()
    except psycopg.Error:
        return last
    return int(found[0]) if found else last


def _note_progress(faults: list[Fault], done: int) -> None:
    now = time.monotonic()
    for fault in faults:
        if fault.back is not None and fault.progressed is None and done > fault.done_when_back:
            fault.progressed = now


def _check_workers(room: Room, names: dict[str, str], killer: WorkerKiller, report: Report) -> None:
    """A worker that exits on its own (not killed by the run) is a problem: it gave up."""
    with killer._lock:
        for name in names:
            proc = room.workers.get(name)
            if proc is not None and proc.poll() is not None and name not in report.exited_early:
                report.exited_early[name] = proc.returncode
                report.problems.append(
                    f"worker {name} exited with status {proc.returncode}:\n{room.worker_log(name)}"
                )
                room.start_worker(names[name], name)


def _stop_all(room: Room) -> dict[str, float | None]:
    """SIGTERM every worker at once; how long each took to exit (None: killed after 30 s)."""
    return {n: s.seconds if s.status is not None else None for n, s in room.terminate().items()}


def read_mailboxes(dovecot: Dovecot, users: list[str]) -> list[MailboxContent]:
    """Every user's inbox as Dovecot holds it now, for the audit."""
    boxes = []
    for user in users:
        with dovecot.imap(user) as client:
            boxes.append(read_mailbox(client, mailbox_of(user)))
    return boxes
