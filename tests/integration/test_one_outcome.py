"""Exactly one outcome per mail, enforced by the store: the router and the dead-letter path
claim the same outcome row, so no interleaving leaves a mail both on a request and in the
dead-letter queue. On SQLite and on PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random

from contracts.dead import DeadLetter
from contracts.mail import Address, MailValidated, ParsedMail, SourceRef
from services.poller.adapters import SqlDeadLetterLog
from services.router.adapters import SqlRequestBook
from services.router.handler import route
from services.router.intake import IntakePolicy
from services.runtime import tables
from services.runtime.errors import StoreOutage
from services.runtime.store import Store

AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def validated(n: int) -> MailValidated:
    return MailValidated(
        mail_id=f"mail-{n}",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref=f"ref-{n}"),
        raw_blob="0" * 64,
        mail=ParsedMail(
            message_id=f"<m{n}@example.org>",
            from_=Address(email=f"user{n}@example.org"),
            subject=f"Problem {n}",
        ),
    )


def dead_letter(msg: MailValidated) -> DeadLetter:
    return DeadLetter(
        mail_id=msg.mail_id,
        helpdesk=msg.helpdesk,
        source=msg.source,
        stage="router",
        error_class="DeliveryLimitExceeded",
        error="the broker gave up on it",
        attempts=6,
    )


class HeldBook(SqlRequestBook):
    """The router's book, pausing after its last write until ``release`` (not committed)."""

    def __init__(self, conn: sa.Connection, holding: threading.Event, release: threading.Event):
        super().__init__(conn)
        self._holding, self._release = holding, release

    def record_outcome(self, *args: Any, **kwargs: Any) -> None:
        super().record_outcome(*args, **kwargs)
        self._holding.set()
        assert self._release.wait(30)


def route_mail(store: Store, msg: MailValidated, book=SqlRequestBook, *extra) -> None:  # type: ignore[no-untyped-def]
    with store.transaction() as conn:
        route(msg, book=book(conn, *extra), intake=IntakePolicy(), now=AT)


def claim_dead(store: Store, dead: DeadLetter) -> bool:
    with store.transaction() as conn:
        return SqlDeadLetterLog(conn).claim(dead, AT)


def ends(store: Store) -> dict[str, list[str]]:
    """Per mail id, every end it has: "request" and/or "dead letter", and its outcome row."""
    found: dict[str, list[str]] = {}
    with store.transaction() as conn:
        for (mail,) in conn.execute(sa.select(tables.request_mails.c.mail_id)):
            found.setdefault(mail, []).append("request")
        for (mail,) in conn.execute(sa.select(tables.dead_letters.c.mail_id)):
            found.setdefault(mail, []).append("dead letter")
        o = tables.mail_outcomes
        for mail, outcome in conn.execute(sa.select(o.c.mail_id, o.c.outcome)):
            found.setdefault(mail, []).append(outcome)
    return found


def test_a_dead_letter_arriving_while_the_router_holds_the_mail_waits_and_records_nothing(store):
    # Given a router that has stored the mail as a request but not committed yet
    msg = validated(1)
    holding, release = threading.Event(), threading.Event()
    router = threading.Thread(target=route_mail, args=(store, msg, HeldBook, holding, release))
    router.start()
    assert holding.wait(30)

    # When the dead letter of the same mail arrives meanwhile (the broker gave up on it)
    claimed: list[bool] = []
    dead = threading.Thread(target=lambda: claimed.append(claim_dead(store, dead_letter(msg))))
    dead.start()
    time.sleep(0.5)
    assert claimed == [], "the dead-letter path must wait for the router's transaction"
    release.set()
    router.join(30)
    dead.join(30)

    # Then the mail has one end: its request; the dead letter was not kept
    assert claimed == [False]
    assert ends(store) == {"mail-1": ["request", "request_created"]}


def test_a_mail_dead_lettered_first_never_becomes_a_request(store):
    msg = validated(2)

    assert claim_dead(store, dead_letter(msg)) is True
    route_mail(store, msg)

    assert ends(store) == {"mail-2": ["dead letter", "dead_lettered"]}


def test_a_dead_letter_delivered_twice_is_one_entry_and_still_its_mails_end(store):
    msg = validated(3)

    assert claim_dead(store, dead_letter(msg)) is True
    assert claim_dead(store, dead_letter(msg)) is True

    assert ends(store) == {"mail-3": ["dead letter", "dead_lettered"]}


def test_router_and_dead_letters_racing_on_many_mails_leave_each_mail_one_end(store):
    # Given many mails, each routed and dead-lettered at about the same moment
    rng = random.Random(7)
    mails = [validated(n) for n in range(100, 140)]
    tasks = [(route_mail, m) for m in mails] + [(claim_dead, dead_letter(m)) for m in mails]
    rng.shuffle(tasks)

    def run(task: tuple[Any, Any]) -> None:
        action, arg = task
        time.sleep(rng.random() * 0.01)
        # The worker waits out a busy database the same way (SQLite refuses a second writer
        # that would deadlock at once, instead of making it wait).
        for attempt in Retrying(
            retry=retry_if_exception_type(StoreOutage),
            wait=wait_random(0.01, 0.05),
            stop=stop_after_delay(60),
            reraise=True,
        ):
            with attempt:
                action(store, arg)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(run, tasks))

    # Then every mail has exactly one end, and its outcome row says which
    found = ends(store)
    assert sorted(found) == sorted(m.mail_id for m in mails)
    for mail, what in found.items():
        assert what in (["request", "request_created"], ["dead letter", "dead_lettered"]), mail
