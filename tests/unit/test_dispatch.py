"""The dispatcher: decode, handle, publish and ack; every failure ends in one DeadLetter."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
from cryptography.fernet import Fernet

from contracts import queues
from contracts.base import Envelope
from contracts.dead import DeadLetter
from contracts.ids import content_hash
from contracts.mail import MailFetched, SourceRef
from contracts.notify import Notify
from services.runtime.bus import Delivery
from services.runtime.crypto import SecretBox
from services.runtime.dispatch import Dispatcher, ErrorLog
from services.runtime.errors import BrokerOutage, InfraError, MailError, StoreOutage
from services.runtime.testing import InMemoryBlobStore, InMemoryDeliveryStarts

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
        self.starts = InMemoryDeliveryStarts()
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
            starts=self.starts,
        )

    def _publish(self, message: Envelope) -> None:
        if self.publish_error is not None:
            raise self.publish_error
        self.published.append(message)

    def deliver(self, body: bytes, **headers) -> str:
        return self.dispatch(Delivery(queues.MAIL_FETCHED, body, headers))

    def redeliver(self, body: bytes, **headers) -> str:
        """The broker hands the message over again (it was not acked before)."""
        return self.dispatch(Delivery(queues.MAIL_FETCHED, body, headers, redelivered=True))

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


def test_a_refused_write_that_persists_is_dead_lettered_after_max_attempts():
    failures = [InfraError("database 127.0.0.1:5432: value too long for type")] * 10
    h = Harness(Handler(*failures), max_attempts=4)

    action = h.deliver(BODY)

    assert action == "ack"
    assert len(h.handler.calls) == 4
    [dead] = h.published
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == "InfraError"
    assert "127.0.0.1:5432" in dead.error


@pytest.mark.parametrize(
    "outage",
    [
        StoreOutage("database 127.0.0.1:5432 cannot be reached: connection refused"),
        BrokerOutage("publishing to mail.parsed failed: ConnectionResetError"),
    ],
    ids=["store", "broker"],
)
def test_an_outage_in_the_handler_is_neither_retried_nor_dead_lettered(outage):
    # Given a handler whose store (or broker) cannot be reached
    h = Harness(Handler(outage, None))

    # When the message is delivered, Then the outage reaches the worker, which waits it out
    with pytest.raises(type(outage)):
        h.deliver(BODY)
    assert len(h.handler.calls) == 1
    assert h.published == []

    # And once it is over the same message goes through as if nothing had happened
    assert h.deliver(BODY) == "ack"
    assert h.published == [notice_for(FETCHED)]


def test_a_publish_the_broker_does_not_confirm_is_not_acked():
    # Given a broker that does not confirm
    h = Harness(Handler())
    h.publish_error = BrokerOutage("publishing to notify failed")

    # When a message is handled, Then it is not acked: the worker reconnects and it comes again
    with pytest.raises(BrokerOutage):
        h.deliver(BODY)
    assert h.dead_letters == []


def test_a_dead_letter_the_broker_does_not_confirm_is_not_acked():
    h = Harness(Handler(MailError("bad")))
    h.publish_error = BrokerOutage("publishing to mail.dead failed")

    with pytest.raises(BrokerOutage):
        h.deliver(BODY)


def test_a_message_not_acked_is_handled_normally_when_it_comes_again():
    h = Harness(Handler())
    h.publish_error = BrokerOutage("no confirm")
    with pytest.raises(BrokerOutage):
        h.deliver(BODY)

    h.publish_error = None
    action = h.redeliver(BODY, **{"x-delivery-count": 1})

    assert action == "ack"
    assert h.published == [notice_for(FETCHED)]


# -- the delivery budget: only deaths while handling count ------------------------------------


def test_a_first_delivery_is_not_counted():
    h = Harness(Handler())

    h.deliver(BODY)

    assert h.starts.starts == {}


def test_a_redelivered_mail_that_goes_through_leaves_no_count_behind():
    h = Harness(Handler())

    assert h.redeliver(BODY) == "ack"

    assert h.starts.starts == {}


def test_a_mail_whose_worker_keeps_dying_is_set_aside_after_the_delivery_limit():
    # Given a mail that kills its worker: each redelivery begins and never ends
    h = Harness(Handler())
    for _ in range(queues.DELIVERY_LIMIT - 1):
        h.starts.begin(f"{queues.MAIL_FETCHED}:{_body_hash()}")

    # When it comes once more
    action = h.redeliver(BODY)

    # Then it is dead-lettered without running the handler again, and the entry says why
    assert action == "ack"
    assert h.handler.calls == []
    [dead] = h.dead_letters
    assert dead.error_class == "DeliveryLimitExceeded"
    assert dead.attempts == queues.DELIVERY_LIMIT
    assert f"{queues.DELIVERY_LIMIT} deliveries" in dead.error
    assert "without the parser worker finishing it" in dead.error
    assert dead.source == FETCHED.source
    assert h.starts.starts == {}


def test_outages_never_use_up_a_mails_delivery_budget():
    # Given a mail redelivered far more often than the limit, each time cut short by the
    # broker going away before its outputs were confirmed
    h = Harness(Handler())
    h.publish_error = BrokerOutage("publishing to mail.parsed failed: ConnectionResetError")
    for _ in range(queues.DELIVERY_LIMIT * 3):
        with pytest.raises(BrokerOutage):
            h.redeliver(BODY)

    # When the broker is back
    h.publish_error = None
    action = h.redeliver(BODY)

    # Then the mail goes on: no attempt was counted against it
    assert action == "ack"
    assert h.dead_letters == []
    assert h.published == [notice_for(FETCHED)]


class StoreDiesMidway(Handler):
    """A handler during whose run the store goes down (so nothing can be written back)."""

    def __init__(self, starts: InMemoryDeliveryStarts) -> None:
        super().__init__()
        self.starts = starts

    def __call__(self, msg: MailFetched) -> Sequence[Envelope]:
        self.calls.append(msg)
        if len(self.calls) == 1:
            self.starts.down = True
            raise StoreOutage("database 127.0.0.1:5432 cannot be reached: server closed")
        return [notice_for(msg)]


def test_a_start_cut_short_while_the_store_is_down_is_not_counted_twice():
    # Given a redelivered mail whose handling began, then the store went down
    h = Harness(Handler())
    h.dispatch.handler = StoreDiesMidway(h.starts)
    with pytest.raises(StoreOutage):
        h.redeliver(BODY)

    # When the store is back and the worker hands over the same mail again
    h.starts.down = False
    action = h.redeliver(BODY)

    # Then that was one start, not two, and it is forgotten once the mail went through
    assert action == "ack"
    assert h.starts.begun == 1
    assert h.starts.starts == {}


def _body_hash() -> str:
    return content_hash(BODY)


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
        raise StoreOutage("database 127.0.0.1:5432 cannot be reached: connection refused")

    def get(self, sha256: str) -> bytes:
        raise StoreOutage("database 127.0.0.1:5432 cannot be reached: connection refused")


@pytest.mark.parametrize(
    ("handler", "body"),
    [(Handler(MailError("bad")), BODY), (Handler(), b"not json")],
    ids=["mail-error", "contract-error"],
)
def test_a_store_outage_while_writing_the_error_log_is_waited_out(handler, body):
    # Given a failing mail and a store that is down, so its error log cannot be written
    h = Harness(handler)
    h.dispatch.error_log = ErrorLog(UnreachableBlobStore(), h.box)

    # When the message is delivered, Then the outage reaches the worker (not lost, no crash)
    with pytest.raises(StoreOutage):
        h.deliver(body)
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
