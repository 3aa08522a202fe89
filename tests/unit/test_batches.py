"""A batch of mails: one store transaction, one round of confirms, acks after both; a mail
that fails is undone alone and dead-lettered alone, the others handled once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from contracts import queues
from contracts.base import Envelope
from contracts.dead import DeadLetter
from contracts.ids import content_hash
from contracts.mail import MailFetched, SourceRef
from services.runtime.batches import BatchDispatcher
from services.runtime.bus import Batched, Batcher, Delivery
from services.runtime.crypto import SecretBox
from services.runtime.dispatch import Dispatcher, ErrorLog
from services.runtime.errors import BrokerOutage, MailError, StoreOutage
from services.runtime.store import Store, get_blob, put_blob
from services.runtime.testing import InMemoryBlobStore, InMemoryDeliveryStarts


def fetched(n: int) -> MailFetched:
    return MailFetched(
        mail_id=f"mail-{n}",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref=f"ref-{n}"),
        raw_blob="raw-sha",
        size=120,
    )


def delivery(n: int, *, redelivered: bool = False) -> Delivery:
    body = fetched(n).model_dump_json().encode()
    return Delivery(queues.MAIL_FETCHED, body, redelivered=redelivered)


class Stage:
    """A stage whose handler stores each mail's id as a blob in the store, in the store's
    transaction, and fails for the mails it is told to."""

    def __init__(self, store: Store, *, poison: set[str] = frozenset(), outage: bool = False):
        self.store = store
        self.poison = set(poison)
        self.outage = outage
        self.calls: list[str] = []
        self.published: list[Envelope] = []
        self.rounds_of_confirms = 0
        self.publish_error: Exception | None = None
        self.commits = 0
        sa.event.listen(store.engine, "commit", self._committed)
        self.single = Dispatcher(
            stage="parser",
            handler=self.handle,
            publish=self._publish_one,
            error_log=ErrorLog(InMemoryBlobStore(), SecretBox(Fernet.generate_key())),
            sleep=lambda _s: None,
            starts=InMemoryDeliveryStarts(),
        )
        self.batch = BatchDispatcher(
            self.single, batch=store.batch, step=store.transaction, publish_all=self._publish_all
        )

    def _committed(self, _conn: object) -> None:
        self.commits += 1

    def handle(self, msg: MailFetched) -> Sequence[Envelope]:
        self.calls.append(msg.mail_id)
        with self.store.transaction() as conn:
            put_blob(conn, msg.mail_id.encode())
            if self.outage:
                raise StoreOutage("database gone")
            if msg.mail_id in self.poison:
                raise MailError(f"{msg.mail_id} is broken")
        return [msg.model_copy(update={"message_id": f"{msg.mail_id}-next"})]

    def _publish_one(self, message: Envelope) -> None:
        self._publish_all([message])

    def _publish_all(self, messages: Sequence[Envelope]) -> None:
        if self.publish_error is not None:
            raise self.publish_error
        self.rounds_of_confirms += 1
        self.published.extend(messages)

    def stored(self, mail_id: str) -> bool:
        with self.store.transaction() as conn:
            try:
                get_blob(conn, self._sha(mail_id))
            except KeyError:
                return False
        return True

    @staticmethod
    def _sha(mail_id: str) -> str:
        return content_hash(mail_id.encode())

    @property
    def dead(self) -> list[str]:
        return [m.mail_id for m in self.published if isinstance(m, DeadLetter)]

    @property
    def passed(self) -> list[str]:
        return [m.mail_id for m in self.published if not isinstance(m, DeadLetter)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    return store


def test_a_batch_is_one_commit_and_one_round_of_confirms(store: Store) -> None:
    stage = Stage(store)

    actions = stage.batch([delivery(n) for n in range(8)])

    assert actions == ["ack"] * 8
    assert (stage.commits, stage.rounds_of_confirms) == (1, 1)
    assert stage.passed == [f"mail-{n}" for n in range(8)]
    assert all(stage.stored(f"mail-{n}") for n in range(8))


def test_one_poison_mail_is_dead_lettered_alone_and_the_others_go_through_once(store: Store):
    stage = Stage(store, poison={"mail-5"})

    actions = stage.batch([delivery(n) for n in range(8)])

    assert actions == ["ack"] * 8
    assert stage.commits == 1
    assert stage.dead == ["mail-5"]
    assert stage.passed == [f"mail-{n}" for n in range(8) if n != 5]
    assert not stage.stored("mail-5")  # what it wrote was undone
    assert all(stage.stored(f"mail-{n}") for n in range(8) if n != 5)
    # Every other mail was handled once; the poison one once in the batch, then alone
    assert sorted(stage.calls) == sorted([f"mail-{n}" for n in range(8)] + ["mail-5"])


def test_a_failure_caught_inside_a_handler_undoes_only_its_own_block(store: Store) -> None:
    with store.batch():
        with store.transaction() as conn:
            put_blob(conn, b"first")
        try:
            with store.transaction() as conn:
                put_blob(conn, b"second")
                raise MailError("broken")
        except MailError:
            pass  # caught by the handler, which goes on
        with store.transaction() as conn:
            put_blob(conn, b"third")

    with store.transaction() as conn:
        assert get_blob(conn, Stage._sha("first")) == b"first"
        assert get_blob(conn, Stage._sha("third")) == b"third"
        with pytest.raises(KeyError):
            get_blob(conn, Stage._sha("second"))


def test_an_outage_undoes_the_whole_batch_and_propagates_unacked(store: Store) -> None:
    stage = Stage(store, outage=True)

    with pytest.raises(StoreOutage):
        stage.batch([delivery(n) for n in range(4)])

    assert stage.published == []
    assert stage.calls == ["mail-0"]  # not split: nobody's mail is to blame


def test_a_batch_whose_confirms_fail_is_stored_but_not_acked(store: Store) -> None:
    stage = Stage(store)
    stage.publish_error = BrokerOutage("broker gone")

    with pytest.raises(BrokerOutage):
        stage.batch([delivery(n) for n in range(4)])

    # Handled again when it comes back: the handlers are idempotent.
    stage.publish_error = None
    assert stage.batch([delivery(n) for n in range(4)]) == ["ack"] * 4
    assert stage.passed == [f"mail-{n}" for n in range(4)]


def test_a_redelivered_batch_is_handled_one_mail_at_a_time(store: Store) -> None:
    stage = Stage(store)

    stage.batch([delivery(n, redelivered=True) for n in range(3)])

    assert stage.rounds_of_confirms == 3  # each mail published on its own


def test_a_message_that_breaks_its_contract_is_dead_lettered_and_the_rest_batched(store):
    stage = Stage(store)
    broken = Delivery(queues.MAIL_FETCHED, b'{"mail_id": 7}')

    actions = stage.batch([delivery(0), broken, delivery(1)])

    assert actions == ["ack"] * 3
    assert stage.passed == ["mail-0", "mail-1"]
    assert len(stage.dead) == 1


class Message:
    """A kombu message as the batcher sees it: acked or requeued once."""

    def __init__(self) -> None:
        self.settled: str | None = None

    def ack(self) -> None:
        self.settled = "ack"

    def requeue(self) -> None:
        self.settled = "requeue"


def test_a_batcher_hands_over_a_full_batch_at_once_and_acks_after_it() -> None:
    seen: list[int] = []

    def handle(batch: Sequence[Delivery]) -> list[str]:
        seen.append(len(batch))
        assert all(m.settled is None for m in messages)  # nothing acked before handling ends
        return ["ack"] * len(batch)

    batcher = Batcher("mail.fetched", Batched(handle, size=3, linger_s=60))
    messages = [Message() for _ in range(3)]
    for n, m in enumerate(messages):
        batcher.add(delivery(n), m)

    assert seen == [3]
    assert [m.settled for m in messages] == ["ack"] * 3


def test_a_batcher_holds_a_partial_batch_until_its_linger_has_passed() -> None:
    now = [0.0]
    seen: list[int] = []
    batcher = Batcher(
        "mail.fetched",
        Batched(lambda b: seen.append(len(b)) or ["ack"] * len(b), size=10, linger_s=0.05),
        monotonic=lambda: now[0],
    )
    batcher.add(delivery(0), Message())
    now[0] = 0.01
    batcher.add(delivery(1), Message())

    assert (seen, batcher.until_due()) == ([], pytest.approx(0.04))
    now[0] = 0.06
    assert batcher.until_due() == 0
    batcher.flush()
    assert seen == [2] and not batcher.holding


def test_a_batch_that_fails_to_be_handled_is_left_unacked() -> None:
    def handle(_batch: Sequence[Delivery]) -> list[str]:
        raise BrokerOutage("broker gone")

    batcher = Batcher("mail.fetched", Batched(handle, size=2, linger_s=1))
    messages = [Message(), Message()]
    batcher.add(delivery(0), messages[0])
    with pytest.raises(BrokerOutage):
        batcher.add(delivery(1), messages[1])

    assert [m.settled for m in messages] == [None, None]
