"""The stages that never log in to a mailbox handle mail without opening its secrets, and
see settings applied while they run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from contracts.settings import Settings, SettingsFile
from services.pipeline import Pipeline
from services.runtime import tables, topology
from services.runtime.bus import Publisher, connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.store import SqlBlobStore, Store


def settings_file(
    allow: list[str] | None = None, *more_boxes: dict[str, Any], restricted: tuple[str, ...] = ()
) -> SettingsFile:
    support = {
        "name": "support",
        "protocol": "imaps",
        "host": "mail.example.com",
        "username": "support",
        "password": "mailbox-pw",
        "addresses": ["support@example.com"],
        "new_requests": {"enabled": allow is None, "allow": allow or []},
    }
    desk = {
        "id": "default",
        "attachments": {"restricted_extensions": ["exe", *restricted]},
        "notifications": {"support_reps": ["reps@example.com"]},
        "mailboxes": [support, *more_boxes],
    }
    return SettingsFile.model_validate({"helpdesks": [desk]})


@pytest.fixture
def sealed_with() -> SecretBox:
    """The key the settings' secrets are sealed with."""
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def stages_key() -> str:
    """The key the stages run with: another one, which opens no secret."""
    return Fernet.generate_key().decode()


@pytest.fixture
def store(tmp_path: Path, sealed_with: SecretBox) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db'}")
    store.migrate()
    ConfigStore(store, sealed_with).apply(settings_file())
    return store


@pytest.fixture
def pipeline(tmp_path: Path, store: Store, stages_key: str) -> Iterator[Pipeline]:
    settings = Settings(
        broker_url="memory://",
        database_url=store.url,
        secret_key=stages_key,
        var_dir=tmp_path,
    )
    conn = connect("memory://")
    for q in topology.all_queues():  # the in-process broker is shared by the whole process
        q.bind(conn.channel()).declare()
        q.bind(conn.channel()).purge()
    built = Pipeline(settings, connection=conn, store=store, clock=SystemClock())
    yield built
    built.close()
    conn.release()


ATTACHED = {
    "setup.exe": "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
    "\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAA=",
    "log.txt": "Content-Type: text/plain\r\n\r\nerror 42 at 09:00",
}


def deliver(
    pipeline: Pipeline, store: Store, mailbox: str, ref: str, sender: str, attached: str = ""
) -> None:
    """A mail to ``mailbox`` as the poller hands it on, with a file of ``ATTACHED``; then
    every stage handles it."""
    head = (
        f"From: {sender}\r\nTo: support@example.com\r\nSubject: Mail {ref}\r\n"
        f"Message-ID: <{ref}@customer.example>\r\nMIME-Version: 1.0\r\n"
    )
    body = "Content-Type: text/plain\r\n\r\nThe printer is jammed.\r\n"
    if attached:
        body = (
            f'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n{body}--b\r\n'
            f'Content-Disposition: attachment; filename="{attached}"\r\n'
            f"{ATTACHED[attached]}\r\n--b--\r\n"
        )
    raw = (head + body).encode()
    fetched = MailFetched(
        mail_id=mail_id(mailbox, ref),
        helpdesk="default",
        source=SourceRef(mailbox=mailbox, ref=ref),
        raw_blob=SqlBlobStore(store).put(raw),
        size=len(raw),
    )
    conn = connect("memory://")  # the in-process broker: the pipeline's queues
    publisher = Publisher(conn)
    try:
        publisher.publish(fetched)
    finally:
        publisher.close()
        conn.release()
    pipeline.settle()


def stripped_notices(store: Store) -> list[str]:
    """To whom the senders' notices of stripped attachments went."""
    n = tables.notifications
    query = sa.select(n.c.recipients).where(
        n.c.topic == "attachment_stripped", n.c.channel == "email"
    )
    with store.transaction() as conn:
        return [r for [rs] in conn.execute(query) for r in rs if r != "reps@example.com"]


def outcomes(store: Store) -> dict[str, str]:
    """Each mail's outcome, by its mail id."""
    o = tables.mail_outcomes
    with store.transaction() as conn:
        return {r.mail_id: r.outcome for r in conn.execute(sa.select(o.c.mail_id, o.c.outcome))}


def test_mail_is_validated_routed_and_notified_by_stages_whose_key_opens_no_secret(
    pipeline: Pipeline, store: Store
) -> None:
    deliver(pipeline, store, "support", "m1", "Ann Lee <ann@customer.example>", "setup.exe")

    assert outcomes(store) == {mail_id("support", "m1"): "request_created"}
    assert stripped_notices(store) == ["ann@customer.example"]
    with store.transaction() as conn:
        assert conn.execute(sa.select(tables.dead_letters)).all() == []


def test_a_new_allowlist_mailbox_and_attachment_rule_are_seen_by_the_running_stages(
    pipeline: Pipeline, store: Store, sealed_with: SecretBox
) -> None:
    # Given running stages that took in a mail under the first settings
    ConfigStore(store, sealed_with).apply(settings_file(["ann@customer.example"]))
    deliver(pipeline, store, "support", "m1", "eve@example.org", "log.txt")
    assert stripped_notices(store) == []

    # When an admin adds Eve to the allowlist, .txt files to the restricted ones, and a
    # mailbox that takes no new requests
    closed = {
        "name": "partners",
        "protocol": "maildir",
        "path": "/srv/mail/partners",
        "new_requests": {"enabled": False},
    }
    edited = settings_file(["eve@example.org"], closed, restricted=("txt",))
    ConfigStore(store, sealed_with).apply(edited)
    deliver(pipeline, store, "support", "m2", "eve@example.org", "log.txt")
    deliver(pipeline, store, "partners", "p1", "eve@example.org")

    # Then the stages applied the new settings without a restart
    assert outcomes(store) == {
        mail_id("support", "m1"): "rejected",
        mail_id("support", "m2"): "request_created",
        mail_id("partners", "p1"): "rejected",
    }
    assert stripped_notices(store) == ["eve@example.org"]
