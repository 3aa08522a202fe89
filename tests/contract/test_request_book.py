"""Behaviour every RequestBook must have: the router's fake and the store's adapter alike.

The router's unit tests route mail through ``InMemoryRequestBook``; these tests hold it to
what ``SqlRequestBook`` does on SQLite and PostgreSQL, so a unit test cannot pass on
behaviour the store does not have. A book is used inside a transaction, as the router's
worker uses it; ``Books`` gives the transactions and what the tests set up or read beside
the port (notifications the notifier sent, dead letters, the outcome row).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest
import sqlalchemy as sa

from contracts.dead import DeadLetter
from contracts.mail import Address, MailValidated, ParsedMail, SourceRef
from contracts.notify import Notify
from services.notifier.adapters import SqlOutbox
from services.poller.adapters import SqlDeadLetterLog
from services.router.adapters import SqlRequestBook
from services.router.ports import RequestBook, SentNotice
from services.router.testing import InMemoryRequestBook, Outcome
from services.runtime import tables
from services.runtime.errors import InfraError
from services.runtime.store import Store

AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
ANN = Address(name="Ann", email="ann@example.org")


def routed(mail_id: str, message_id: str | None = None, *, helpdesk: str = "default"):
    return MailValidated(
        mail_id=mail_id,
        helpdesk=helpdesk,
        source=SourceRef(mailbox=f"{helpdesk}-box", ref=mail_id),
        raw_blob="0" * 64,
        mail=ParsedMail(message_id=message_id or f"<{mail_id}@example.org>", from_=ANN),
    )


class Books(Protocol):
    def transaction(self) -> AbstractContextManager[RequestBook]:
        """A book in a transaction: committed when the block ends, undone when it raises."""
        ...

    def notice_sent(self, about: MailValidated, message_id: str, topic: str) -> int:
        """The notifier kept an email about the mail ``about``; returns the entry's id."""
        ...

    def dead_lettered(self, msg: MailValidated) -> None:
        """A stage gave the mail up: its dead-letter entry took the mail's outcome."""
        ...

    def outcome_of(self, mail_id: str) -> Outcome | None: ...


class RequestBookContract:
    @pytest.fixture
    def books(self) -> Iterator[Books]:
        raise NotImplementedError("an implementation's test class provides books")

    # -- one outcome per mail --------------------------------------------------------------

    def test_a_mail_is_claimed_once(self, books: Books):
        msg = routed("m-1")
        with books.transaction() as book:
            first = book.claim(msg, AT)
            again = book.claim(msg, AT)
            book.record_outcome(msg, "rejected", None, "not on the allowlist", AT)
        with books.transaction() as book:
            redelivered = book.claim(msg, AT + timedelta(minutes=1))

        assert (first, again, redelivered) == (True, False, False)
        assert books.outcome_of("m-1") == Outcome("rejected", None, "not on the allowlist")

    def test_the_outcome_recorded_is_kept_with_its_request_and_detail(self, books: Books):
        msg = routed("m-1")
        with books.transaction() as book:
            book.claim(msg, AT)
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, msg, {"subject": "Printer"}, AT)
            book.record_outcome(msg, "request_created", request_id, "", AT)

        assert books.outcome_of("m-1") == Outcome("request_created", request_id, "")

    def test_a_transaction_that_failed_leaves_no_claim_request_or_mail(self, books: Books):
        # Given a router that claimed a mail and opened its request, then crashed
        msg = routed("m-1")
        with pytest.raises(RuntimeError), books.transaction() as book:
            assert book.claim(msg, AT)
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, msg, {}, AT)
            raise RuntimeError("worker crashed")

        # Then the redelivered mail is routed afresh
        with books.transaction() as book:
            assert not book.request_exists("default", request_id)
            assert not book.message_id_known("default", msg.mail.message_id)
            assert book.claim(msg, AT)
        assert books.outcome_of("m-1") is not None

    def test_a_dead_lettered_mail_cannot_be_claimed(self, books: Books):
        msg = routed("m-1")
        books.dead_lettered(msg)

        with books.transaction() as book:
            assert not book.claim(msg, AT)
        outcome = books.outcome_of("m-1")
        assert outcome is not None and outcome.outcome == "dead_lettered"

    # -- requests and their mails ----------------------------------------------------------

    def test_each_request_gets_its_own_id_and_exists_in_its_help_desk_only(self, books: Books):
        with books.transaction() as book:
            first = book.open_request("default", "Printer", ANN, AT)
            second = book.open_request("sales", "Offer", Address(email=""), AT)

            assert first != second
            assert book.request_exists("default", first)
            assert book.request_exists("sales", second)
            assert not book.request_exists("sales", first)
            assert not book.request_exists("default", max(first, second) + 1)

    def test_a_mail_is_stored_once_by_mail_id(self, books: Books):
        msg = routed("m-1")
        with books.transaction() as book:
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, msg, {}, AT)

        copy = routed("m-1", "<another@example.org>")
        with pytest.raises(InfraError), books.transaction() as book:
            book.add_mail(request_id, copy, {}, AT)

        with books.transaction() as book:
            assert book.message_id_known("default", msg.mail.message_id)
            assert not book.message_id_known("default", "<another@example.org>")

    def test_a_message_id_is_stored_once_per_help_desk(self, books: Books):
        with books.transaction() as book:
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, routed("m-1", "<same@example.org>"), {}, AT)
            sales = book.open_request("sales", "Printer", ANN, AT)
            book.add_mail(sales, routed("m-2", "<same@example.org>", helpdesk="sales"), {}, AT)

        with pytest.raises(InfraError), books.transaction() as book:
            book.add_mail(request_id, routed("m-3", "<same@example.org>"), {}, AT)

    def test_a_mail_cannot_be_added_to_a_request_that_does_not_exist(self, books: Books):
        with pytest.raises(InfraError), books.transaction() as book:
            book.add_mail(4242, routed("m-1"), {}, AT)

        with books.transaction() as book:
            assert not book.message_id_known("default", "<m-1@example.org>")

    # -- lookups by Message-ID -------------------------------------------------------------

    def test_a_message_id_is_known_in_its_help_desk_only(self, books: Books):
        with books.transaction() as book:
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, routed("m-1", "<a@example.org>"), {}, AT)

            assert book.message_id_known("default", "<a@example.org>")
            assert not book.message_id_known("sales", "<a@example.org>")
            assert not book.message_id_known("default", "<A@example.org>")
            assert not book.message_id_known("default", "<b@example.org>")

    def test_a_request_is_found_by_any_of_its_mails_message_ids(self, books: Books):
        ids = [f"<id-{i}@example.org>" for i in range(100)]
        with books.transaction() as book:
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, routed("m-1", ids[0]), {}, AT)
            book.add_mail(request_id, routed("m-2", ids[-1]), {}, AT)

            assert book.request_of_message_ids("default", ids) == request_id
            assert book.request_of_message_ids("default", ids[50:]) == request_id
            assert book.request_of_message_ids("sales", ids) is None
            assert book.request_of_message_ids("default", ids[1:99]) is None
            assert book.request_of_message_ids("default", []) is None

    def test_the_request_of_the_newest_matching_mail_wins(self, books: Books):
        # Given two requests, the mail of the first stored later but dated newer (two
        # routers finish in another order than their clocks read)
        with books.transaction() as book:
            newer = book.open_request("default", "Printer", ANN, AT)
            older = book.open_request("default", "Printer again", ANN, AT)
            book.add_mail(newer, routed("m-1", "<new@example.org>"), {}, AT + timedelta(hours=1))
        with books.transaction() as book:
            book.add_mail(older, routed("m-2", "<old@example.org>"), {}, AT)

        # When a reply names both
        with books.transaction() as book:
            found = book.request_of_message_ids(
                "default", ["<old@example.org>", "<new@example.org>"]
            )

        # Then it joins the request of the newer mail
        assert found == newer

    def test_on_a_tie_the_newest_request_wins(self, books: Books):
        with books.transaction() as book:
            first = book.open_request("default", "Printer", ANN, AT)
            second = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(second, routed("m-2", "<b@example.org>"), {}, AT)
            book.add_mail(first, routed("m-1", "<a@example.org>"), {}, AT)

            found = book.request_of_message_ids("default", ["<a@example.org>", "<b@example.org>"])

        assert found == max(first, second)

    def test_notifications_are_found_by_message_id_newest_first_with_their_request(
        self, books: Books
    ):
        # Given a mail on a request, a dead-lettered mail, and notifications about both
        on_request, lost = routed("m-1"), routed("m-2", helpdesk="sales")
        with books.transaction() as book:
            request_id = book.open_request("default", "Printer", ANN, AT)
            book.add_mail(request_id, on_request, {}, AT)
        first = books.notice_sent(on_request, "<n.1@desk.example>", "attachment_stripped")
        books.notice_sent(on_request, "<n.2@desk.example>", "attachment_stripped")
        last = books.notice_sent(lost, "<n.3@desk.example>", "mail_error")

        # When an answer names two of them and an unknown one
        with books.transaction() as book:
            found = book.notifications_by_message_ids(
                ["<n.1@desk.example>", "<n.3@desk.example>", "<unknown@x.example>"]
            )

        # Then both are found, of any help desk, newest first
        assert found == [
            SentNotice(last, "sales", "mail_error", "<n.3@desk.example>", None),
            SentNotice(first, "default", "attachment_stripped", "<n.1@desk.example>", request_id),
        ]
        with books.transaction() as book:
            assert book.notifications_by_message_ids([]) == []


# -- the in-memory fake used by the router's unit tests ---------------------------------------


class FakeBooks:
    def __init__(self) -> None:
        self.book = InMemoryRequestBook()

    def transaction(self) -> AbstractContextManager[RequestBook]:
        return self.book.transaction()

    def notice_sent(self, about: MailValidated, message_id: str, topic: str) -> int:
        return self.book.sent(about=about, message_id=message_id, topic=topic)

    def dead_lettered(self, msg: MailValidated) -> None:
        # The fake keeps no dead letters: the entry's claim is the outcome it takes.
        self.book.outcomes[msg.mail_id] = Outcome("dead_lettered", None, "parser: MailError")

    def outcome_of(self, mail_id: str) -> Outcome | None:
        return self.book.outcomes.get(mail_id)


class TestInMemoryRequestBook(RequestBookContract):
    @pytest.fixture
    def books(self) -> Iterator[Books]:
        yield FakeBooks()


# -- the store's adapter, on SQLite and PostgreSQL ------------------------------------------


class SqlBooks:
    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def transaction(self) -> Iterator[RequestBook]:
        with self.store.transaction() as conn:
            yield SqlRequestBook(conn)

    def notice_sent(self, about: MailValidated, message_id: str, topic: str) -> int:
        msg = Notify(
            mail_id=about.mail_id,
            helpdesk=about.helpdesk,
            key=f"{about.mail_id}:{topic}:{message_id}",
            topic=topic,
            channel="email",
            to=["ann@example.org"],
            subject="Re: Printer",
            body="removed",
        )
        return SqlOutbox(self.store).add(msg, msg.to, AT, message_id=message_id).id

    def dead_lettered(self, msg: MailValidated) -> None:
        dead = DeadLetter(
            mail_id=msg.mail_id,
            helpdesk=msg.helpdesk,
            source=msg.source,
            stage="parser",
            error_class="MailError",
            error="unreadable",
            attempts=1,
        )
        with self.store.transaction() as conn:
            assert SqlDeadLetterLog(conn).claim(dead, AT)

    def outcome_of(self, mail_id: str) -> Outcome | None:
        o = tables.mail_outcomes
        query = sa.select(o.c.outcome, o.c.request_id, o.c.detail).where(o.c.mail_id == mail_id)
        with self.store.transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else Outcome(row.outcome, row.request_id, row.detail or "")


class TestSqlRequestBook(RequestBookContract):
    @pytest.fixture
    def books(self, store: Store) -> Iterator[Books]:
        yield SqlBooks(store)
