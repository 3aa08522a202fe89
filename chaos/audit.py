"""What became of every mail in the mailboxes, read from Dovecot and from PostgreSQL.

The mailboxes are the truth: every mail Dovecot holds (in the inbox, or moved to the error
folder) must have exactly one outcome in the store, and since every generated mail is
well-formed, none may be a dead letter.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from contracts.ids import mail_id

ERROR_FOLDER = "Errors"
_UID = re.compile(rb"UID (\d+)")
_MESSAGE_ID = re.compile(rb"Message-ID:\s*(<[^>]*>)", re.IGNORECASE)


@dataclass(frozen=True)
class MailboxContent:
    """One mailbox as Dovecot holds it: inbox mail ids and Message-IDs, and the error folder."""

    mailbox: str
    mail_ids: dict[str, str]  # mail id -> Message-ID, for every inbox mail
    in_error_folder: int


@dataclass(frozen=True)
class Audit:
    mails: int
    with_outcome: int
    #: No outcome at all: not a request, a conversation, a rejection nor a dead letter.
    lost: int
    #: More than one request mail for one Message-ID, or outcomes for mails never in a mailbox.
    doubled: int
    #: On a request (or conversation) and in the dead-letter queue at once.
    two_outcomes: int
    #: Dead-letter entries: every generated mail is well-formed, so each one is false.
    falsely_dead_lettered: int
    in_error_folders: int
    outcomes: dict[str, int]

    @property
    def clean(self) -> bool:
        bad = (self.lost, self.doubled, self.two_outcomes, self.falsely_dead_lettered)
        return not any(bad) and self.in_error_folders == 0


def read_mailbox(client: imaplib.IMAP4, mailbox: str) -> MailboxContent:
    """Every inbox mail of a logged-in IMAP session, by the mail id Mailroom gives it."""
    typ, data = client.select("INBOX", readonly=True)
    _check(typ, data, "SELECT INBOX")
    validity = _uidvalidity(client)
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    _check(typ, data, "UID FETCH")
    ids: dict[str, str] = {}
    for item in data:
        if isinstance(item, tuple):
            uid, found = _UID.search(item[0]), _MESSAGE_ID.search(item[1])
            if uid and found:
                ids[mail_id(mailbox, f"{validity}:{int(uid.group(1))}")] = found.group(1).decode()
    return MailboxContent(mailbox, ids, _count(client, ERROR_FOLDER))


def audit(boxes: list[MailboxContent], db: psycopg.Connection[Any]) -> Audit:
    expected = {mid: msgid for box in boxes for mid, msgid in box.mail_ids.items()}
    outcomes = dict(db.execute("SELECT mail_id, outcome FROM mail_outcomes").fetchall())
    on_requests = [r[0] for r in db.execute("SELECT mail_id FROM request_mails").fetchall()]
    dead = [r[0] for r in db.execute("SELECT mail_id FROM dead_letters").fetchall()]
    per_message_id = db.execute(
        "SELECT count(*) - count(DISTINCT (helpdesk_id, message_id)) FROM request_mails"
    ).fetchone()
    strangers = [m for m in on_requests if m not in expected]
    kinds: dict[str, int] = {}
    for outcome in outcomes.values():
        kinds[outcome] = kinds.get(outcome, 0) + 1
    return Audit(
        mails=len(expected),
        with_outcome=sum(1 for m in expected if m in outcomes),
        lost=sum(1 for m in expected if m not in outcomes),
        doubled=int(per_message_id[0] if per_message_id else 0) + len(strangers),
        two_outcomes=len(set(on_requests) & set(dead)),
        falsely_dead_lettered=len(dead),
        in_error_folders=sum(b.in_error_folder for b in boxes),
        outcomes=kinds,
    )


def _uidvalidity(client: imaplib.IMAP4) -> int:
    typ, data = client.response("UIDVALIDITY")
    if typ != "UIDVALIDITY" or not data or data[0] is None:
        raise RuntimeError("the server sent no UIDVALIDITY on SELECT")
    return int(data[0])


def _count(client: imaplib.IMAP4, folder: str) -> int:
    """Mails in ``folder``; 0 when it does not exist."""
    with contextlib.suppress(imaplib.IMAP4.error):
        typ, data = client.status(folder, "(MESSAGES)")
        if typ == "OK" and data and data[0]:
            found = re.search(rb"MESSAGES (\d+)", data[0])
            return int(found.group(1)) if found else 0
    return 0


def _check(typ: str, data: list[Any], what: str) -> None:
    if typ != "OK":
        raise RuntimeError(f"{what} failed: {data!r}")
