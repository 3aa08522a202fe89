"""A load larger than the workers can take: the parser is slowed on purpose (a fixed pause
per mail, ``bench.slow_parser``), so mail waits in ``mail.fetched`` and drains later.

Sampled twice a second until every mail has an outcome and the queues are empty: the
messages ready in each work queue (a passive declare), each worker's resident memory
(``VmRSS``), and the mails handed off by the poller and done, read from PostgreSQL. Bounded
prefetch keeps a worker's memory flat however long the queue grows; publisher confirms keep
the poller at the broker's pace.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pika
import psycopg
from pika.exceptions import ChannelClosedByBroker

from bench.outcomes import scalar, tally
from bench.procs import REPO
from bench.report import Figure, Results
from bench.room import STAGES, Room
from contracts.queues import MAIL_FETCHED, PREFETCH, WORK_QUEUES
from contracts.settings import Settings

sys.path.insert(0, str(REPO / "tests"))
from servers import PostgreSQL, RabbitMQ  # noqa: E402  (tests/ is not a package)

COUNT = 3000
PAUSE_MS = 10
SAMPLE_S = 0.5
DEADLINE_S = 150
#: After the last outcome, how long the notifier may take to empty its queue.
DRAIN_S = 15
#: The load has started once this many mails have an outcome: every stage has handled
#: every kind of generated mail (plain, reply, broken MIME), so what it imports on first
#: use is loaded, and the backlog is still ahead.
WARM = 50
ROWS = 10
VHOST = "pressure"


@dataclass(frozen=True)
class Sample:
    seconds: float
    ready: dict[str, int | None]
    rss_mib: dict[str, float | None]
    handed_off: int
    done: int


@dataclass(frozen=True)
class Unacked:
    """``rabbitmqctl list_queues`` once the poller had handed off every mail."""

    seconds: float
    queues: dict[str, dict[str, int]]


@dataclass(frozen=True)
class PressureRun:
    samples: list[Sample]
    unacked: Unacked | None
    peak_hwm_mib: dict[str, float | None]
    exited: dict[str, int]
    exit_logs: dict[str, str]
    tally: dict[str, int]


def measure(workdir: Path, results: Results, count: int = COUNT, pause_ms: int = PAUSE_MS) -> None:
    with ExitStack() as stack:
        rabbitmq = RabbitMQ.start(workdir / "rabbitmq")
        stack.callback(rabbitmq.stop)
        postgres = PostgreSQL.start(workdir / "postgres")
        stack.callback(postgres.stop)
        url = rabbitmq.new_vhost(VHOST)
        room = Room(workdir / "room", url, postgres.new_database(VHOST))
        stack.callback(room.stop_workers)
        room.prepare(count)
        with psycopg.connect(postgres.conninfo(VHOST), autocommit=True) as db:
            run = _run(room, rabbitmq, url, db, count, pause_ms)
    _report(run, count, pause_ms, results)


def start_slowed_parser(room: Room, pause_ms: int) -> subprocess.Popen[bytes]:
    """The parser worker with a pause of ``pause_ms`` before each mail, as ``parser``."""
    with (room.workdir / "parser.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.slow_parser", str(pause_ms)],
            env=room.env,
            cwd=room.workdir,
            stdout=log,
            stderr=log,
        )
    room.workers["parser"] = proc
    return proc


def _run(
    room: Room,
    rabbitmq: RabbitMQ,
    url: str,
    db: psycopg.Connection[Any],
    count: int,
    pause_ms: int,
) -> PressureRun:
    for stage in STAGES:
        if stage == "parser":
            start_slowed_parser(room, pause_ms)
        else:
            room.start_worker(stage)
    with closing(_Depths(url)) as depths, ThreadPoolExecutor(1) as pool:
        samples, unacked = _sample(room, rabbitmq, depths, db, count, pool)
    peaks = room.peak_memory()
    exited = room.exited_workers()
    logs = {stage: room.worker_log(stage) for stage in exited}
    room.stop_workers()
    return PressureRun(samples, unacked, peaks, exited, logs, tally(db))


def _sample(
    room: Room,
    rabbitmq: RabbitMQ,
    depths: _Depths,
    db: psycopg.Connection[Any],
    count: int,
    pool: ThreadPoolExecutor,
) -> tuple[list[Sample], Unacked | None]:
    """Samples every SAMPLE_S until every mail has an outcome and every work queue is empty
    (or a worker exits, or the deadline passes); and one look at the unacknowledged
    messages, taken aside (rabbitmqctl needs a second or two) once the poller is done."""
    start = time.monotonic()
    samples: list[Sample] = []
    unacked: Future[Unacked] | None = None
    finished_at: float | None = None
    while True:
        now = time.monotonic() - start
        sample = Sample(
            seconds=now,
            ready={q: depths.ready(q) for q in WORK_QUEUES},
            rss_mib={s: _rss_mib(p.pid) for s, p in room.workers.items()},
            handed_off=scalar(
                db, "SELECT count(*) FROM fetched_mails WHERE handed_off_at IS NOT NULL"
            ),
            done=scalar(db, "SELECT count(*) FROM mail_outcomes"),
        )
        samples.append(sample)
        if unacked is None and sample.handed_off >= count:
            unacked = pool.submit(_unacked, rabbitmq, now)
        if sample.done >= count and finished_at is None:
            finished_at = now
        drained = all(n == 0 for n in sample.ready.values())
        if finished_at is not None and (drained or now - finished_at > DRAIN_S):
            break
        if room.exited_workers() or now > DEADLINE_S:
            break
        time.sleep(max(0.0, start + now + SAMPLE_S - time.monotonic()))
    return samples, unacked.result() if unacked else None


class _Depths:
    """Messages ready in a queue, by a passive declare: cheap enough to ask twice a second
    (rabbitmqctl starts an Erlang VM each time)."""

    def __init__(self, url: str) -> None:
        self._conn = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._conn.channel()

    def ready(self, queue: str) -> int | None:
        """None while the queue is not declared yet (the broker closes the channel then)."""
        try:
            ok = self._channel.queue_declare(queue, passive=True)
        except ChannelClosedByBroker:
            self._channel = self._conn.channel()
            return None
        return int(ok.method.message_count)

    def close(self) -> None:
        self._conn.close()


def _unacked(rabbitmq: RabbitMQ, seconds: float) -> Unacked:
    """What each work queue holds, ready and unacknowledged; no queue when rabbitmqctl fails
    (the figures do not depend on it)."""
    try:
        out = rabbitmq.rabbitmqctl(
            "list_queues",
            "-p",
            VHOST,
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
        )
    except (subprocess.SubprocessError, OSError):
        out = ""
    queues = {}
    for line in out.splitlines():
        name, *numbers = line.split("\t")
        if name in WORK_QUEUES and len(numbers) == 3 and all(n.isdigit() for n in numbers):
            ready, unacked, consumers = map(int, numbers)
            queues[name] = {"ready": ready, "unacknowledged": unacked, "consumers": consumers}
    return Unacked(seconds, queues)


def _rss_mib(pid: int) -> float | None:
    """Resident memory of a live process now (Linux ``VmRSS``); None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


# -- what the samples show ---------------------------------------------------------------------


def _report(run: PressureRun, count: int, pause_ms: int, results: Results) -> None:
    samples = run.samples
    what = "back-pressure"
    peak = max(samples, key=lambda s: s.ready[MAIL_FETCHED] or 0)
    warm = next((s for s in samples if s.done >= WARM), None)
    last = samples[-1]
    results.figures += [
        Figure(
            f"{what}: peak depth of {MAIL_FETCHED}",
            "mails in the load",
            "msgs",
            peak.ready[MAIL_FETCHED],
            count,
        ),
        Figure(
            f"{what}: mails/s handed off by the poller",
            "mails/s with an outcome (the slowed parser's pace)",
            "mails/s",
            _rate(samples, "handed_off", count),
            _rate(samples, "done", count),
        ),
    ]
    results.stage_memory += [
        Figure(
            f"{what}: worker {stage}, peak RSS",
            f"its RSS at the start of the load ({WARM} outcomes)",
            "MiB",
            _peak_rss(samples, stage, warm),
            warm.rss_mib.get(stage) if warm else None,
        )
        for stage in STAGES
    ]
    load = f"{count} mails, the parser slowed by {pause_ms} ms a mail"
    results.notes += _notes(run, count, f"{what} ({load})", peak, last)
    results.details["backpressure"] = {
        "mails": count,
        "pause_ms": pause_ms,
        "prefetch": _prefetch(),
        "sample_s": SAMPLE_S,
        "warm_outcomes": WARM,
        "peak_hwm_mib": run.peak_hwm_mib,
        "unacked": asdict(run.unacked) if run.unacked else None,
        "tally": run.tally,
        "samples": [asdict(s) for s in samples],
    }


def _rate(samples: list[Sample], field: str, count: int) -> float | None:
    """Mails per second from the first sample with one mail counted to the first with all."""
    counted = [(s.seconds, getattr(s, field)) for s in samples]
    first = next((t for t, n in counted if n > 0), None)
    full = next((t for t, n in counted if n >= count), None)
    if first is None or full is None or full <= first:
        return None
    return count / (full - first)


def _peak_rss(samples: list[Sample], stage: str, warm: Sample | None) -> float | None:
    if warm is None:
        return None
    after = [s.rss_mib.get(stage) for s in samples if s.seconds >= warm.seconds]
    values = [v for v in after if v is not None]
    return max(values) if values else None


def _notes(run: PressureRun, count: int, what: str, peak: Sample, last: Sample) -> list[str]:
    notes = [f"{what}, over time:\n{_table(run.samples, peak)}"]
    if run.unacked and run.unacked.queues:
        held = ", ".join(
            f"{q} {n['ready']} ready + {n['unacknowledged']} unacked ({n['consumers']} consumer)"
            for q, n in run.unacked.queues.items()
        )
        notes.append(
            f"{what}: when the poller had handed off all {count} mails "
            f"(t={run.unacked.seconds:.1f} s): {held}; prefetch is {_prefetch()} a consumer "
            "(the batch size of parser, validator and router)"
        )
    ends = ", ".join(f"{q} {n}" for q, n in last.ready.items())
    notes.append(f"{what}: queues at the end (t={last.seconds:.1f} s): {ends}")
    if last.done != count or any(n != 0 for n in last.ready.values()):
        notes.append(
            f"PROBLEM: {what}: {last.done} of {count} mails had an outcome and the queues "
            f"were not empty at the end ({ends})"
        )
    for stage, code in run.exited.items():
        notes.append(
            f"PROBLEM: {what}: worker {stage} exited with status {code}:\n{run.exit_logs[stage]}"
        )
    return notes


def _table(samples: list[Sample], peak: Sample) -> str:
    """ROWS samples evenly spread over the run, and the one of the deepest queue."""
    last = len(samples) - 1
    picked = {round(i * last / (ROWS - 1)) for i in range(ROWS)} | {samples.index(peak)}
    lines = [
        f"{'t s':>6} {'fetched':>8} {'parsed':>7} {'valid.':>7} {'notify':>7}"
        f" {'parser MiB':>11} {'poller MiB':>11} {'handed off':>11} {'done':>6}"
    ]
    for s in (samples[i] for i in sorted(picked)):
        depth = [_n(s.ready.get(q)) for q in WORK_QUEUES]
        lines.append(
            f"{s.seconds:6.1f} {depth[0]:>8} {depth[1]:>7} {depth[2]:>7} {depth[3]:>7}"
            f" {_mib(s.rss_mib.get('parser')):>11} {_mib(s.rss_mib.get('poller')):>11}"
            f" {s.handed_off:>11} {s.done:>6}"
        )
    return "\n".join(lines)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _prefetch() -> int:
    """What a batched stage's consumer may hold: its batch, at least ``PREFETCH``."""
    return max(PREFETCH, Settings().batch_size)
