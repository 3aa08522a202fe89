"""The dispatcher: decode, handle, publish and ack; every failure ends in one DeadLetter."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
from cryptography.fernet import Fernet

from contracts import queues
from contracts.base import Envelope
from contracts.dead import DeadLetter
from contracts.mail import MailFetched, SourceRef
from contracts.notify import Notify
from services.runtime.bus import Delivery
from services.runtime.crypto import SecretBox
from services.runtime.dispatch import Dispatcher, ErrorLog
from services.runtime.errors import InfraError, MailError
from services.runtime.testing import InMemoryBlobStore

FETCHED = MailFetched(
    mail_id="mail-1",
    helpdesk="default",
    source=SourceRef(mailbox="support", ref="1700000000.M1P1.host"),
    raw_blob="raw-sha",
    size=120,
)


def notice_for(msg: MailFetched) -> Notify:
    return Notify(
        message_id=f"{msg.mail_id}-notice",
        occurred_at=msg.occurred_at,
        mail_id=msg.mail_id,
        helpdesk=msg.helpdesk,
        key=f"{msg.mail_id}:test",
        topic="test",
        channel="bell",
        to=["reps@example.com"],
        subject="seen",
        body="seen",
    )


class Handler:
    """A stage handler that records its calls and fails as told: one outcome per call."""

    def __init__(self, *failures: BaseException | None) -> None:
        self.failures = list(failures)
        self.calls: list[Envelope] = []

    def __call__(self, msg: MailFetched) -> Sequence[Envelope]:
        self.calls.append(msg)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return [notice_for(msg)]


class Harness:
    """A dispatcher of stage "parser" over mail.fetched, publishing into a list."""

    def __init__(self, handler: Handler, *, max_attempts: int = 3) -> None:
        self.published: list[Envelope] = []
        self.publish_error: InfraError | None = None
        self.blobs = InMemoryBlobStore()
        self.box = SecretBox(Fernet.generate_key())
        self.handler = handler
        self.dispatch = Dispatcher(
            stage="parser",
            handler=handler,
            publish=self._publish,
            error_log=ErrorLog(self.blobs, self.box),
            max_attempts=max_attempts,
            sleep=lambda _seconds: None,
        )

    def _publish(self, message: Envelope) -> None:
        if self.publish_error is not None:
            raise self.publish_error
        self.published.append(message)

    def deliver(self, body: bytes, **headers) -> str:
        return self.dispatch(Delivery(queues.MAIL_FETCHED, body, headers))

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [m for m in self.published if isinstance(m, DeadLetter)]

    def log_text(self, dead: DeadLetter) -> str:
        assert dead.log_blob is not None
        return self.box.decrypt(self.blobs.get(dead.log_blob)).decode()


BODY = FETCHED.model_dump_json().encode()


def with_fields(**changes) -> bytes:
    data = json.loads(BODY)
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_a_valid_message_is_handled_its_outputs_published_and_acked():
    # Given a parser with a handler that emits one message
    h = Harness(Handler())

    # When a valid mail.fetched message arrives
    action = h.deliver(BODY)

    # Then the handler saw the message, its output is published and the delivery acked
    assert action == "ack"
    assert h.handler.calls == [FETCHED]
    assert h.published == [notice_for(FETCHED)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_fields(size="one hundred"), "size"),
        (with_fields(source={"mailbox": "support"}), "source.ref"),
        (with_fields(raw_blob=...), "raw_blob"),
        (with_fields(surprise="extra"), "surprise"),
    ],
    ids=["wrong-type", "missing-nested", "missing", "unknown-field"],
)
def test_a_message_that_breaks_its_contract_is_dead_lettered_naming_the_field(body, field):
    h = Harness(Handler())

    action = h.deliver(body)

    # Then no handler ran, one dead letter says which field is wrong, and the delivery is acked
    assert action == "ack"
    assert h.handler.calls == []
    [dead] = h.published
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == "ContractError"
    assert dead.stage == "parser"
    assert f"{field}:" in dead.error
    # And it keeps the identity the message still had
    assert dead.mail_id == "mail-1"
    assert dead.helpdesk == "default"


def test_a_contract_error_keeps_the_source_when_it_is_readable():
    h = Harness(Handler())

    h.deliver(with_fields(size=-1))

    [dead] = h.dead_letters
    assert dead.source == FETCHED.source
    assert "size:" in dead.error


@pytest.mark.parametrize("body", [b"not json at all", b"\xff\xfe\x00", b"[1, 2, 3]", b""])
def test_a_body_that_is_not_a_message_is_dead_lettered_with_a_synthetic_id(body):
    h = Harness(Handler())

    action = h.deliver(body)

    assert action == "ack"
    assert h.handler.calls == []
    [dead] = h.published
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == "ContractError"
    assert dead.mail_id.startswith("unreadable-")
    assert dead.source is None
    assert "does not match its contract" in dead.error


def test_a_mail_error_is_dead_lettered_once_with_an_encrypted_log():
    # Given a handler that finds the mail itself broken
    h = Harness(Handler(MailError("the mail has no headers")))

    # When the message is delivered
    action = h.deliver(BODY)

    # Then it is not retried: one dead letter, acked
    assert action == "ack"
    assert len(h.handler.calls) == 1
    [dead] = h.published
    assert isinstance(dead, DeadLetter)
    assert dead.stage == "parser"
    assert dead.error_class == "MailError"
    assert dead.error == "the mail has no headers"
    assert (dead.mail_id, dead.helpdesk, dead.source) == ("mail-1", "default", FETCHED.source)
    assert dead.attempts == 1
    # And the log is stored encrypted and holds the traceback
    assert dead.log_blob is not None
    assert b"the mail has no headers" not in h.blobs.get(dead.log_blob)
    text = h.log_text(dead)
    assert "Traceback (most recent call last)" in text
    assert "MailError: the mail has no headers" in text
    assert "stage: parser" in text


def test_an_unexpected_exception_is_dead_lettered_like_a_mail_error():
    h = Harness(Handler(KeyError("Content-Type")))

    assert h.deliver(BODY) == "ack"

    assert len(h.handler.calls) == 1
    [dead] = h.published
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == "KeyError"
    assert "Traceback" in h.log_text(dead)


def test_the_delivery_count_of_the_broker_is_reported_as_attempts():
    h = Harness(Handler(MailError("bad")))

    h.deliver(BODY, **{"x-delivery-count": 2})

    [dead] = h.dead_letters
    assert dead.attempts == 3


def test_an_infra_error_that_passes_is_retried_and_the_mail_goes_on():
    # Given a store that fails twice, then works
    h = Harness(Handler(InfraError("db down"), InfraError("db down"), None), max_attempts=3)

    # When the message is delivered
    action = h.deliver(BODY)

    # Then the handler ran three times, the output is published once, nothing dead-lettered
    assert action == "ack"
    assert len(h.handler.calls) == 3
    assert h.published == [notice_for(FETCHED)]


def test_an_infra_error_that_persists_is_dead_lettered_after_max_attempts():
    failures = [InfraError("database 127.0.0.1:5432 is unreachable")] * 10
    h = Harness(Handler(*failures), max_attempts=4)

    action = h.deliver(BODY)

    assert action == "ack"
    assert len(h.handler.calls) == 4
    [dead] = h.published
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == "InfraError"
    assert "127.0.0.1:5432" in dead.error


def test_a_publish_the_broker_does_not_confirm_requeues_the_delivery():
    # Given a broker that does not confirm
    h = Harness(Handler())
    h.publish_error = InfraError("publishing to notify failed")

    # When a message is handled, Then it is not acked, so it comes again
    assert h.deliver(BODY) == "requeue"


def test_a_dead_letter_the_broker_does_not_confirm_requeues_the_delivery():
    h = Harness(Handler(MailError("bad")))
    h.publish_error = InfraError("publishing to mail.dead failed")

    assert h.deliver(BODY) == "requeue"


def test_a_requeued_message_is_handled_normally_when_it_comes_again():
    h = Harness(Handler())
    h.publish_error = InfraError("no confirm")
    h.deliver(BODY)

    h.publish_error = None
    action = h.deliver(BODY, **{"x-delivery-count": 1})

    assert action == "ack"
    assert h.published == [notice_for(FETCHED)]


def never(_msg: MailFetched) -> Sequence[Envelope]:
    raise AssertionError("the handler must not run")


def test_each_queue_is_decoded_as_its_own_contract():
    # A DeadLetter body on mail.fetched is not a MailFetched
    blobs = InMemoryBlobStore()
    published: list[Envelope] = []
    publish: Callable[[Envelope], None] = published.append
    box = SecretBox(Fernet.generate_key())
    dispatch = Dispatcher("parser", never, publish, ErrorLog(blobs, box), sleep=lambda _s: None)
    other = DeadLetter(mail_id="mail-1", stage="x", error_class="E", error="e", attempts=1)

    action = dispatch(Delivery(queues.MAIL_FETCHED, other.model_dump_json().encode()))

    assert action == "ack"
    [dead] = published
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == "ContractError"


class UnreachableBlobStore:
    """A blob store whose database is down."""

    def put(self, data: bytes) -> str:
        raise InfraError("database 127.0.0.1:5432: connection refused")

    def get(self, sha256: str) -> bytes:
        raise InfraError("database 127.0.0.1:5432: connection refused")


@pytest.mark.parametrize(
    ("handler", "body"),
    [(Handler(MailError("bad")), BODY), (Handler(), b"not json")],
    ids=["mail-error", "contract-error"],
)
def test_a_store_outage_while_writing_the_error_log_requeues_the_delivery(handler, body):
    # Given a failing mail and a store that is down, so its error log cannot be written
    h = Harness(handler)
    h.dispatch.error_log = ErrorLog(UnreachableBlobStore(), h.box)

    # When the message is delivered, Then it is requeued for later (not lost, no crash)
    assert h.deliver(body) == "requeue"
    assert h.published == []


def test_the_error_log_describes_the_mail_and_is_unreadable_without_the_key():
    blobs, box = InMemoryBlobStore(), SecretBox(Fernet.generate_key())
    raw = (
        b"From: Heather <heather@zylker.example>\r\nSubject: Printer jam\r\n"
        b"Date: Mon, 02 Nov 2026 09:00:00 +0100\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    )
    fetched = MailFetched(
        mail_id="m-1",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="k1"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )

    try:
        raise MailError("no")
    except MailError as exc:
        ref = ErrorLog(blobs, box).write("parser", fetched.model_dump_json().encode(), exc)

    sealed = blobs.get(ref)
    assert b"heather" not in sealed
    log = box.decrypt(sealed).decode()
    for expected in (
        "mailbox: support",
        "mail: k1",
        f"size: {len(raw)} bytes",
        "Subject: Printer jam",
        "From: Heather",
        "multipart/mixed",
        "text/plain",
        "MailError: no",
        "Traceback",
    ):
        assert expected in log


def test_a_failed_notification_is_an_entry_of_its_own_that_keeps_the_message():
    # Given a notifier whose store refuses two notifications about the same mail
    blobs = InMemoryBlobStore()
    published: list[Envelope] = []
    box = SecretBox(Fernet.generate_key())

    def refuse(_msg: Notify) -> Sequence[Envelope]:
        raise MailError("template broken")

    dispatch = Dispatcher("notifier", refuse, published.append, ErrorLog(blobs, box))
    bell = notice_for(FETCHED)
    email = bell.model_copy(update={"key": "mail-1:test:email", "channel": "email"})

    # When both are delivered
    for notice in (bell, email):
        dispatch(Delivery(queues.NOTIFY, notice.model_dump_json().encode()))

    # Then each is its own entry, not the mail's (which may well be a request by now)
    first, second = published
    assert isinstance(first, DeadLetter) and isinstance(second, DeadLetter)
    assert first.mail_id != second.mail_id
    assert "mail-1" not in (first.mail_id, second.mail_id)
    assert (first.queue, first.stage) == (queues.NOTIFY, "notifier")
    # And each keeps its message, encrypted, to be replayed as it was
    assert first.payload_blob is not None
    assert b"reps@example.com" not in blobs.get(first.payload_blob)
    assert Notify.model_validate_json(box.decrypt(blobs.get(first.payload_blob))) == bell


def test_a_failed_mail_keeps_no_copy_of_its_message_the_raw_mail_rebuilds_it():
    h = Harness(Handler(MailError("bad")))

    h.deliver(BODY)

    [dead] = h.dead_letters
    assert (dead.queue, dead.payload_blob, dead.mail_id) == (queues.MAIL_FETCHED, None, "mail-1")
