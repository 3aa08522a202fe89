"""The rejected-mail listing on SQLite and PostgreSQL.

What the router's store adapter does is in ``tests/contract/test_request_book.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from contracts.mail import Address, MailValidated, ParsedMail, SourceRef
from services.reports import list_rejected
from services.router.adapters import SqlRequestBook
from services.router.dry_run import ReadOnlyRequestBook
from services.router.handler import decide
from services.router.intake import IntakePolicy
from services.runtime import tables
from services.runtime.errors import InfraError
from services.runtime.store import Store, put_blob

AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
OPEN = IntakePolicy()


def routed(mail_id: str, message_id: str, *, mailbox: str = "support") -> MailValidated:
    return MailValidated(
        mail_id=mail_id,
        helpdesk="default",
        source=SourceRef(mailbox=mailbox, ref=mail_id),
        raw_blob="0" * 64,
        mail=ParsedMail(message_id=message_id, from_=Address(email="ann@example.org")),
    )


def test_the_rejected_listing_shows_from_subject_and_reason(store: Store):
    raw = (
        "From: =?utf-8?q?Ev=C3=A9?= <eve@bücher.example>\r\n"
        "Subject: =?utf-8?q?Pr=C3=A9sentation?= offer\r\nMessage-ID: <x@y>\r\n\r\n"
    ).encode() + b"body " * 40_000  # bigger than the part of the mail the listing reads
    with store.transaction() as conn:
        sha = put_blob(conn, raw)
        conn.execute(
            tables.fetched_mails.insert().values(
                mail_id="m-9",
                helpdesk_id="default",
                mailbox="sales",
                ref="key-9",
                raw_sha256=sha,
                size=len(raw),
                fetched_at=AT,
            )
        )
        book = SqlRequestBook(conn)
        rejected, duplicate = routed("m-9", "<x@y>", mailbox="sales"), routed("m-10", "<z@y>")
        for msg in (rejected, duplicate):
            assert book.claim(msg, AT)
        book.record_outcome(rejected, "rejected", None, "not on the allowlist", AT)
        book.record_outcome(duplicate, "duplicate", None, "", AT)

        rows = list_rejected(conn)

    assert rows == [
        {
            "mail_id": "m-9",
            "helpdesk": "default",
            "mailbox": "sales",
            "ref": "key-9",
            "from": {"name": "Evé", "email": "eve@bücher.example"},
            "subject": "Présentation offer",
            "reason": "not on the allowlist",
            "at": AT.isoformat(),
        }
    ]


def test_a_dry_run_decides_against_the_store_and_the_database_refuses_its_writes(store: Store):
    with store.transaction() as conn:
        book = SqlRequestBook(conn)
        request_id = book.open_request("default", "Printer", Address(email="a@b.c"), AT)
        book.add_mail(request_id, routed("m-1", "<first@example.org>"), {}, AT)
    reply = routed("m-2", "<reply@example.org>")
    reply = reply.model_copy(
        update={"mail": reply.mail.model_copy(update={"in_reply_to": ["<first@example.org>"]})}
    )

    with store.read_only() as conn:
        decision = decide(reply, book=ReadOnlyRequestBook(SqlRequestBook(conn)), intake=OPEN)
    with pytest.raises(InfraError), store.read_only() as conn:
        SqlRequestBook(conn).claim(reply, AT)  # past the read-only book: the database says no

    assert (decision.outcome, decision.rule, decision.request_id) == (
        "conversation_added",
        "thread_headers",
        request_id,
    )
    with store.transaction() as conn:
        outcomes = conn.execute(sa.select(tables.mail_outcomes)).all()
        requests = conn.execute(sa.select(tables.requests)).all()
    assert outcomes == [] and len(requests) == 1
    with store.transaction() as conn:  # the pool's connection writes again afterwards
        assert SqlRequestBook(conn).claim(reply, AT)
