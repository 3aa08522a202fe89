"""``mailroom migrate``, the one-shot step of a deployment, and ``mailroom health``, the
container health check: on the embedded default and on RabbitMQ + PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from harness import MAILROOM, Mailroom, settings_yaml
from psycopg import sql
from servers import PostgreSQL, free_port

MIGRATED = "migrated the store to revision"
NOTHING_TO_DO = "the store is already at the newest revision; nothing to do"


def settings_file(room: Mailroom) -> Path:
    room.use_demo_maildir()
    path = room.workdir / "settings.yaml"
    path.write_text(settings_yaml(room.maildir))
    return path


def test_migrate_brings_a_new_store_to_the_newest_revision_then_finds_nothing_to_do(
    mailroom: Mailroom,
) -> None:
    first = mailroom.cli("migrate").stdout
    second = mailroom.cli("migrate").stdout

    assert first.startswith(MIGRATED) and "applied 0001" in first
    assert second.strip() == NOTHING_TO_DO


def test_migrate_with_a_settings_file_applies_it_and_run_again_changes_nothing(
    mailroom: Mailroom,
) -> None:
    path = settings_file(mailroom)

    first = mailroom.cli("migrate", "--config", str(path)).stdout
    second = mailroom.cli("migrate", "--config", str(path)).stdout

    assert MIGRATED in first and f"applied {path}: help desks default; mailboxes demo" in first
    assert second.splitlines()[0] == NOTHING_TO_DO
    assert "paused" not in second
    [box] = mailroom.json("mailbox", "list")
    assert (box["name"], box["enabled"]) == ("demo", True)


def test_migrate_refuses_a_bad_settings_file_before_touching_the_store(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("helpdesks:\n  - id: default\n    mailboxes: [{name: x, protocol: gopher}]\n")

    done = room.cli("migrate", "--config", str(bad), check=False)

    assert done.returncode == 2
    assert "protocol" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "var" / "mailroom.db").exists()


@contextmanager
def migrating(room: Mailroom) -> Iterator[subprocess.Popen[str]]:
    """``mailroom migrate`` started, once it says it waits for the store; its output goes to
    ``migrate.out`` and ``migrate.err`` in the room's folder."""
    with (
        (room.workdir / "migrate.out").open("w") as out,
        (room.workdir / "migrate.err").open("w") as err,
    ):
        proc = subprocess.Popen(
            [*MAILROOM, "migrate"],
            env=room.env,
            cwd=room.workdir,
            stdout=out,
            stderr=err,
            text=True,
        )
    try:
        room.wait_for(
            lambda: "cannot be reached" in (room.workdir / "migrate.err").read_text(),
            timeout=60,
            what="migrate to wait for the store",
        )
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_migrate_waits_for_a_database_that_is_not_there_yet(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    """As in a deployment whose database is still being made when migrate starts."""
    name = f"later_{uuid.uuid4().hex[:12]}"
    room = Mailroom(tmp_path, "memory://", postgres.url(name))

    with migrating(room) as proc:
        with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        code = proc.wait(timeout=60)

    assert code == 0, (tmp_path / "migrate.err").read_text()
    assert (tmp_path / "migrate.out").read_text().startswith(MIGRATED)


def test_migrate_gives_up_on_a_database_that_stays_away_and_names_it(tmp_path: Path) -> None:
    room = Mailroom(
        tmp_path, "memory://", f"postgresql+psycopg://mailroom:hunter2@127.0.0.1:{free_port()}/x"
    )
    room.env["MAILROOM_OUTAGE_LIMIT_SECONDS"] = "2"

    done = room.cli("migrate", check=False, timeout=60)

    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mailroom: gave up: the store could not be reached")
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_migrate_stops_at_once_on_sigterm_while_it_waits(tmp_path: Path) -> None:
    room = Mailroom(
        tmp_path, "memory://", f"postgresql+psycopg://mailroom@127.0.0.1:{free_port()}/x"
    )

    with migrating(room) as proc:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)

    assert code == 0
    assert "Traceback" not in (tmp_path / "migrate.err").read_text()
    assert MIGRATED not in (tmp_path / "migrate.out").read_text()


def test_health_says_alive_then_ready_for_a_running_worker(scaled: Mailroom) -> None:
    mailroom = scaled
    mailroom.apply_settings(settings_file(mailroom).read_text())
    port = free_port()
    mailroom.start_worker("parser", health_port=port)

    mailroom.wait_for(
        lambda: mailroom.cli("health", "--ready", "--port", str(port), check=False).returncode == 0,
        what="the parser to be ready",
    )
    alive = mailroom.cli("health", "--port", str(port))
    ready = mailroom.cli("health", "--ready", "--port", str(port))

    assert (alive.stdout, ready.stdout) == ("alive\n", "ready\n")


def test_health_reports_what_the_worker_cannot_reach(scaled: Mailroom) -> None:
    scaled.apply_settings(settings_file(scaled).read_text())
    scaled.env["MAILROOM_BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    scaled.env["MAILROOM_HEALTH_PORT"] = str(free_port())
    scaled.start_worker("parser")

    scaled.wait_for(
        lambda: "cannot be reached" in scaled.cli("health", "--ready", check=False).stderr,
        what="the parser to report the broker",
    )
    not_ready = scaled.cli("health", "--ready", check=False)
    alive = scaled.cli("health", check=False)

    assert not_ready.returncode == 1
    assert not_ready.stderr.startswith("mailroom: not ready: the broker cannot be reached")
    assert (alive.returncode, alive.stdout) == (0, "alive\n")


def test_health_without_a_process_answering_is_unhealthy_with_the_reason(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    port = free_port()

    nobody = room.cli("health", "--port", str(port), check=False)
    no_port = room.cli("health", check=False)

    assert nobody.returncode == 1
    assert nobody.stderr == f"mailroom: no answer on 127.0.0.1:{port}: connection refused\n"
    assert no_port.returncode == 1
    assert "MAILROOM_HEALTH_PORT" in no_port.stderr and "Traceback" not in no_port.stderr
