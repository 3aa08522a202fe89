"""The poller's logic: taking new mail from a mailbox, and recording mail that failed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from contracts import queues
from contracts.dead import DeadLetter
from contracts.ids import content_hash, mail_id
from contracts.mail import MailFetched, SourceRef
from services.poller.dead import decode_dead
from services.poller.handler import ErrorNotices, fetch_new, record_dead_letter
from services.poller.testing import FakeMailSource
from services.runtime.bus import Delivery
from services.runtime.crypto import SecretBox
from services.runtime.dispatch import ErrorLog
from services.runtime.testing import (
    InMemoryBlobStore,
    InMemoryDeadLetterLog,
    InMemoryFetchedLog,
)

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
REPS = ErrorNotices(enabled=True, support_reps=("reps@example.com", "lead@example.com"))


def raw_mail(n: int) -> bytes:
    return f"From: ann@example.org\r\nSubject: mail {n}\r\n\r\nBody {n}\r\n".encode()


@pytest.fixture
def source() -> FakeMailSource:
    return FakeMailSource()


@pytest.fixture
def blobs() -> InMemoryBlobStore:
    return InMemoryBlobStore()


@pytest.fixture
def log() -> InMemoryFetchedLog:
    return InMemoryFetchedLog()


def fetch(source, blobs, log, limit: int = 50) -> list[MailFetched]:
    return fetch_new(
        source,
        mailbox="support",
        helpdesk="default",
        blobs=blobs,
        fetched=log,
        now=NOW,
        limit=limit,
    ).fetched


# -- fetch_new ----------------------------------------------------------------------------


def test_new_mails_are_fetched_oldest_first_with_deterministic_ids(source, blobs, log):
    # Given two new mails in the mailbox
    first = source.deliver(raw_mail(1))
    second = source.deliver(raw_mail(2))

    # When the poller fetches
    fetched = fetch(source, blobs, log)

    # Then each mail's id is derived from its mailbox and ref, oldest first
    assert [m.mail_id for m in fetched] == [mail_id("support", first), mail_id("support", second)]
    assert [m.source for m in fetched] == [
        SourceRef(mailbox="support", ref=first),
        SourceRef(mailbox="support", ref=second),
    ]
    assert {m.helpdesk for m in fetched} == {"default"}
    assert {m.occurred_at for m in fetched} == {NOW}


def test_fetching_the_same_mail_again_gives_the_same_id(source, blobs, log):
    source.deliver(raw_mail(1))

    once = fetch(source, blobs, log)
    again = fetch(source, blobs, log)

    assert [m.mail_id for m in once] == [m.mail_id for m in again]
    assert log.counts == {once[0].mail_id: 2}


def test_the_same_ref_in_two_mailboxes_gives_two_ids():
    assert mail_id("support", "42") != mail_id("sales", "42")


def test_each_fetched_mail_is_stored_as_a_blob_of_its_exact_bytes(source, blobs, log):
    raw = raw_mail(1) + b"\xff\xfe binary tail \x00"
    source.deliver(raw)

    [fetched] = fetch(source, blobs, log)

    assert blobs.get(fetched.raw_blob) == raw
    assert fetched.raw_blob == content_hash(raw)
    assert fetched.size == len(raw)


def test_each_fetched_mail_is_remembered(source, blobs, log):
    source.deliver(raw_mail(1))
    source.deliver(raw_mail(2))

    fetched = fetch(source, blobs, log)

    assert log.records == {m.mail_id: m for m in fetched}


def test_at_most_limit_mails_are_fetched_per_call(source, blobs, log):
    refs = [source.deliver(raw_mail(n)) for n in range(5)]

    fetched = fetch(source, blobs, log, limit=2)

    assert [m.source.ref for m in fetched] == refs[:2]
    assert len(log.records) == 2


def test_fetching_marks_nothing_on_the_mailbox(source, blobs, log):
    # Given new mails
    refs = [source.deliver(raw_mail(n)) for n in range(3)]

    # When they are fetched (but not yet handed off)
    fetch(source, blobs, log)

    # Then they are all still new on the mailbox: a crash now means a re-fetch, not a gap
    assert source.handed_off == set()
    assert source.list_new(10) == refs
    assert source.fetch_oldest_unmarked() == raw_mail(0)


def test_an_empty_mailbox_fetches_nothing(source, blobs, log):
    assert fetch(source, blobs, log) == []
    assert log.records == {}
    assert blobs.blobs == {}


# -- record_dead_letter ---------------------------------------------------------------------


def dead_letter(mail: str = "mail-1", *, helpdesk: str | None = "default", **fields) -> DeadLetter:
    values = {
        "mail_id": mail,
        "helpdesk": helpdesk,
        "source": SourceRef(mailbox="support", ref="1700000000.M1P1.host"),
        "stage": "parser",
        "error_class": "MailError",
        "error": "the mail has no headers",
        "attempts": 1,
        "log_blob": "log-sha",
        **fields,
    }
    return DeadLetter(**values)


def test_a_dead_letter_is_recorded_once_per_mail():
    # Given a failed mail
    dead = InMemoryDeadLetterLog()
    msg = dead_letter("mail-1")

    # When its dead letter arrives twice (a redelivery)
    record_dead_letter(msg, dead=dead, notices=REPS, now=NOW)
    record_dead_letter(
        msg.model_copy(update={"message_id": "again"}), dead=dead, notices=REPS, now=NOW
    )

    # Then there is one entry for it
    assert list(dead.entries) == ["mail-1"]
    assert dead.entries["mail-1"].error == "the mail has no headers"


def test_support_reps_get_a_bell_and_an_email_about_a_failed_mail():
    msg = dead_letter("mail-1")

    notices = record_dead_letter(msg, dead=InMemoryDeadLetterLog(), notices=REPS, now=NOW).notices

    assert sorted(n.channel for n in notices) == ["bell", "email"]
    for notice in notices:
        assert notice.to == ["reps@example.com", "lead@example.com"]
        assert notice.helpdesk == "default"
        assert notice.mail_id == "mail-1"
        assert notice.topic == "mail_error"
        assert "support" in notice.subject
        assert "parser" in notice.body
        assert "MailError: the mail has no headers" in notice.body
    assert len({n.key for n in notices}) == 2


def test_a_redelivered_dead_letter_repeats_the_same_notices():
    # The notifier keeps one notification per key, so repeating them mails nobody twice
    dead = InMemoryDeadLetterLog()
    msg = dead_letter("mail-1")

    first = record_dead_letter(msg, dead=dead, notices=REPS, now=NOW).notices
    second = record_dead_letter(msg, dead=dead, notices=REPS, now=NOW).notices

    assert {n.key for n in first} == {n.key for n in second}


@pytest.mark.parametrize(
    "notices",
    [
        ErrorNotices(enabled=False, support_reps=("reps@example.com",)),
        ErrorNotices(enabled=True, support_reps=()),
    ],
    ids=["disabled", "no-reps"],
)
def test_no_notices_when_they_are_off_or_nobody_is_listed(notices):
    dead = InMemoryDeadLetterLog()

    out = record_dead_letter(dead_letter("mail-1"), dead=dead, notices=notices, now=NOW)

    assert out.kept and out.notices == []
    assert list(dead.entries) == ["mail-1"]


def test_a_dead_letter_without_a_help_desk_is_recorded_without_notices():
    dead = InMemoryDeadLetterLog()

    out = record_dead_letter(
        dead_letter("unreadable-1", helpdesk=None, source=None), dead=dead, notices=REPS, now=NOW
    )

    assert out.kept and out.notices == []
    assert list(dead.entries) == ["unreadable-1"]


def test_a_mail_that_already_has_a_final_outcome_is_not_an_error():
    # Given a mail that became a request, whose worker died before the ack
    dead = InMemoryDeadLetterLog(final={"mail-1"})

    # When the broker dead-letters it anyway
    out = record_dead_letter(dead_letter("mail-1"), dead=dead, notices=REPS, now=NOW)

    # Then nothing is recorded, nobody is told and the mail is not moved to the error folder
    assert not out.kept and out.notices == []
    assert dead.entries == {}


# -- decode_dead ----------------------------------------------------------------------------


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def error_log(blobs, box) -> ErrorLog:
    return ErrorLog(blobs, box)


def test_a_dead_letter_body_is_read_as_it_is(error_log, blobs):
    msg = dead_letter("mail-1")

    decoded = decode_dead(Delivery(queues.MAIL_DEAD, msg.model_dump_json().encode()), error_log)

    assert decoded == msg
    assert blobs.blobs == {}


def test_a_message_the_broker_gave_up_on_names_the_stage_that_kept_dying(error_log, blobs, box):
    # Given a mail message that RabbitMQ dead-lettered from mail.validated after its limit
    fetched = MailFetched(
        mail_id="mail-7",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="7"),
        raw_blob="raw-sha",
        size=10,
    )
    death = [{"queue": queues.MAIL_VALIDATED, "reason": "delivery_limit", "count": 1}]
    delivery = Delivery(queues.MAIL_DEAD, fetched.model_dump_json().encode(), {"x-death": death})

    # When the poller reads it
    dead = decode_dead(delivery, error_log)

    # Then it is a dead letter of the router, keeping the mail's identity
    assert dead.stage == "router"
    assert dead.error_class == "DeliveryLimitExceeded"
    assert dead.mail_id == "mail-7"
    assert dead.helpdesk == "default"
    assert dead.source == SourceRef(mailbox="support", ref="7")
    assert "router" in dead.error
    assert "delivery_limit" in dead.error
    log_text = box.decrypt(blobs.get(dead.log_blob)).decode()
    assert "stage: router" in log_text
    assert "mail-7" in log_text


def test_unreadable_bytes_become_a_dead_letter_with_a_synthetic_id(error_log, blobs, box):
    # Given bytes on mail.dead that are not even JSON
    body = b"\x00\xff this is not a message"

    # When the poller reads them
    dead = decode_dead(Delivery(queues.MAIL_DEAD, body), error_log)

    # Then they still become one dead letter, with an id derived from the bytes
    assert dead.mail_id.startswith("unreadable-")
    assert dead.mail_id == decode_dead(Delivery(queues.MAIL_DEAD, body), error_log).mail_id
    assert dead.error_class == "ContractError"
    assert dead.source is None
    assert dead.helpdesk is None
    assert "Invalid JSON" in dead.error
    # And the encrypted error log holds the error
    assert body not in blobs.get(dead.log_blob)
    log_text = box.decrypt(blobs.get(dead.log_blob)).decode()
    assert "Invalid JSON" in log_text
    assert "ValidationError" in log_text


def test_a_json_message_of_no_known_kind_keeps_what_it_can(error_log):
    body = json.dumps({"mail_id": "mail-9", "helpdesk": "default", "kind": "??"}).encode()

    dead = decode_dead(Delivery(queues.MAIL_DEAD, body), error_log)

    assert dead.mail_id == "mail-9"
    assert dead.helpdesk == "default"
    assert dead.error_class == "ContractError"
