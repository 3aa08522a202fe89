"""The notifier's outbox in the store under concurrent claimers, on SQLite and PostgreSQL.

What one claimer sees is in ``tests/contract/test_notifier_outbox.py``.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

from contracts.notify import Notify
from services.notifier.adapters import SqlOutbox
from services.notifier.handler import Outgoing
from services.notifier.message import message_id_for
from services.notifier.retries import RetryRounds
from services.notifier.testing import RecordingSender
from services.runtime.store import Store
from services.runtime.testing import FakeClock

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def notice(key: str, *, to=("reps@example.com",), channel="email", helpdesk="default") -> Notify:
    return Notify(
        mail_id="mail-1",
        helpdesk=helpdesk,
        key=key,
        topic="mail_error",
        channel=channel,
        to=list(to),
        subject="Mail could not be processed",
        body="See the error folder.",
    )


def keep(outbox: SqlOutbox, key: str, *, at=NOW, due=NOW, **fields) -> int:
    msg = notice(key, **fields)
    entry = outbox.add(
        msg, list(msg.to), at, message_id=message_id_for(key, "example.com"), next_attempt_at=due
    )
    return entry.id


def test_two_notifier_processes_retrying_at_once_send_every_email_exactly_once(store):
    # Given 60 due emails and two notifier processes (each with its own database pool)
    for i in range(60):
        keep(SqlOutbox(store), f"k{i}", due=NOW - timedelta(seconds=i))
    server = RecordingSender()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def notifier_process() -> None:
        outbox = SqlOutbox(Store(store.url))
        clock = FakeClock(NOW)
        outgoing = Outgoing(sender=server, domain="example.com")
        rounds = RetryRounds(outbox=outbox, outgoing_of=lambda _: outgoing, clock=clock, limit=5)
        start.wait()
        try:
            while rounds.run():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    # When both run retry rounds at the same time until nothing is due
    threads = [threading.Thread(target=notifier_process) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then every email went out, none twice
    assert errors == []
    sent = Counter(m.message_id for m in server.sent)
    assert len(sent) == 60
    assert set(sent.values()) == {1}
