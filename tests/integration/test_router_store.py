"""The rejected-mail listing on SQLite and PostgreSQL.

What the router's store adapter does is in ``tests/contract/test_request_book.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.mail import Address, MailValidated, ParsedMail, SourceRef
from services.reports import list_rejected
from services.router.adapters import SqlRequestBook
from services.runtime import tables
from services.runtime.store import Store, put_blob

AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


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
