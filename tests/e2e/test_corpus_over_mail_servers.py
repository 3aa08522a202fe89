"""All of the shared real-world corpus, delivered into Dovecot and fetched over IMAPS and POP3S.

On RabbitMQ + PostgreSQL with ``mailroom run --once``: every mail ends as exactly one
request, conversation, duplicate, rejection or dead-letter entry, and over IMAPS the error
folder holds exactly the dead-lettered ones.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import Mailroom

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
NOT_MAIL = {"LICENSE", "README.md"}
OUTCOMES = ("requests_created", "conversations_added", "duplicates", "rejected", "dead_lettered")


def corpus_mails() -> list[bytes]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in NOT_MAIL)
    assert files, f"no corpus at {CORPUS}"
    return [p.read_bytes() for p in files]


def mailbox_settings(protocol: str, port: int, user: str, ca_file: str) -> str:
    return f"""
helpdesks:
  - id: corpus
    attachments: {{max_size_mb: 10}}
    notifications: {{support_reps: [reps@corpus.example]}}
    mailboxes:
      - name: corpus
        protocol: {protocol}
        host: localhost
        port: {port}
        username: {user}
        password: secret
        tls: {{verify: true, ca_file: {ca_file}}}
        import_existing: all
        addresses: [{user}]
"""


def assert_every_mail_ends_exactly_once(
    room: Mailroom, summary: dict[str, Any], mails: list[bytes]
) -> list[dict[str, Any]]:
    """Each mail has exactly one outcome in the run's summary and every dead letter a
    reason; returns the dead-letter entries."""
    print({k: summary[k] for k in ("fetched", *OUTCOMES, "attachments_stripped")})
    assert summary["fetched"] == len(mails)
    assert sum(summary[k] for k in OUTCOMES) == len(mails), "a mail has no outcome"
    ids = Counter(m["mail_id"] for m in summary["mails"])
    assert len(ids) == len(mails) and max(ids.values()) == 1
    dead: list[dict[str, Any]] = room.json("dlq", "list")
    assert len(dead) == summary["dead_lettered"]
    assert all(d["error"] for d in dead), "every dead letter has a reason"
    return dead


@pytest.mark.parametrize("protocol", ["imaps", "pops"])
def test_every_corpus_mail_ends_exactly_once(
    protocol: str,
    dovecot,
    rabbitmq,
    postgres,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    user = f"corpus-{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(user, "secret")
    mails = corpus_mails()
    dovecot.deliver_many(user, mails)
    room = Mailroom(tmp_path, rabbitmq.new_vhost(), postgres.new_database())
    port = dovecot.imaps_port if protocol == "imaps" else dovecot.pop3s_port
    room.apply_settings(mailbox_settings(protocol, port, user, str(dovecot.ca_file)))

    summary = room.json("run", "--once")

    dead = assert_every_mail_ends_exactly_once(room, summary, mails)
    on_requests = [m for r in room.json("requests", "list") for m in r["mails"]]
    assert any(m["defects"] for m in on_requests), "parse defects are kept on the requests"
    if protocol == "imaps":
        assert dovecot.folder_count(user, "Errors") == len(dead)
        assert len(dovecot.imap_uids(user)) == len(mails) - len(dead)
    else:
        assert dovecot.imap_uids(user) == [], "POP deletes what it handed off"
