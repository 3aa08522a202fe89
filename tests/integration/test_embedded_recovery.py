"""The in-process broker dies with the process; the store brings its mails back."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from contracts import queues
from contracts.dead import DeadLetter
from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from contracts.settings import Settings
from services.poller.adapters import SqlFetchedLog
from services.poller.worker import Poller
from services.runtime import topology
from services.runtime.bus import connect
from services.runtime.clock import SystemClock
from services.runtime.store import Store


@pytest.fixture
def poller(tmp_path: Path) -> tuple[Poller, Store, object]:
    settings = Settings(
        broker_url="memory://",
        database_url=f"sqlite:///{tmp_path / 'db'}",
        secret_key=Fernet.generate_key().decode(),
        var_dir=tmp_path,
    )
    store = Store(settings.effective_database_url)
    store.migrate()
    conn = connect("memory://")
    for q in topology.all_queues():
        q.bind(conn.channel()).declare()
        q.bind(conn.channel()).purge()
    return Poller(settings, connection=conn, store=store, clock=SystemClock()), store, conn


def remember(store: Store, ref: str, times: int) -> MailFetched:
    msg = MailFetched(
        mail_id=mail_id("box", ref),
        helpdesk="default",
        source=SourceRef(mailbox="box", ref=ref),
        raw_blob="0" * 64,
        size=1,
    )
    log = SqlFetchedLog(store)
    for _ in range(times):
        log.record(msg, SystemClock().now())
    return msg


def take(conn, queue: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    bound = topology.queue(queue).bind(conn.channel())
    out = []
    while (message := bound.get(no_ack=True)) is not None:
        out.append(message.body if isinstance(message.body, bytes) else message.body.encode())
    return out


def test_mails_without_an_outcome_are_published_again(poller) -> None:  # type: ignore[no-untyped-def]
    p, store, conn = poller
    lost = remember(store, "k1", times=1)

    assert p.recover() == 1

    [body] = take(conn, queues.MAIL_FETCHED)
    again = MailFetched.model_validate_json(body)
    assert (again.mail_id, again.source) == (lost.mail_id, lost.source)


def test_a_mail_that_keeps_stopping_the_process_is_dead_lettered(poller) -> None:  # type: ignore[no-untyped-def]
    p, store, conn = poller
    poison = remember(store, "k2", times=queues.DELIVERY_LIMIT)

    p.recover()

    assert take(conn, queues.MAIL_FETCHED) == []
    [body] = take(conn, queues.MAIL_DEAD)
    dead = DeadLetter.model_validate_json(body)
    assert dead.mail_id == poison.mail_id
    assert dead.error_class == "DeliveryLimitExceeded"
