"""The bus on a real RabbitMQ: durable quorum queues, confirms, delivery limit into mail.dead."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from kombu import Connection

from contracts import queues
from contracts.mail import MailFetched, SourceRef
from contracts.settings import Settings
from services.poller.worker import Poller
from services.reports import list_dead_letters
from services.runtime import topology
from services.runtime.bus import Publisher, connect, declare_all, delivery_of
from services.runtime.clock import SystemClock
from services.runtime.store import Store


@pytest.fixture
def amqp_url(rabbitmq) -> str:  # type: ignore[no-untyped-def]
    return rabbitmq.new_vhost()


def fetched(n: int = 1) -> MailFetched:
    return MailFetched(
        mail_id=f"mail-{n}",
        helpdesk="default",
        source=SourceRef(mailbox="box", ref=f"k{n}"),
        raw_blob="0" * 64,
        size=10,
    )


def queue_arguments(rabbitmq, vhost_url: str, name: str) -> dict:  # type: ignore[no-untyped-def]
    vhost = vhost_url.rsplit("/", 1)[1]
    out = rabbitmq.rabbitmqctl(
        "list_queues",
        "-p",
        vhost,
        "-q",
        "--formatter",
        "json",
        "name",
        "durable",
        "arguments",
        "type",
    )
    found = {q["name"]: q for q in json.loads(out)}[name]
    args = found["arguments"]  # a list of [key, value] pairs in some versions
    if isinstance(args, list):  # [key, type, value] triples in some versions
        args = {a[0]: a[-1] for a in args}
    return found | {"arguments": args}


def test_queues_are_durable_quorum_queues_dead_lettering_into_mail_dead(rabbitmq, amqp_url) -> None:  # type: ignore[no-untyped-def]
    conn = connect(amqp_url)
    declare_all(conn)
    conn.release()

    q = queue_arguments(rabbitmq, amqp_url, queues.MAIL_PARSED)

    assert q["durable"] is True and q["type"] == "quorum"
    assert q["arguments"]["x-delivery-limit"] == queues.BROKER_DELIVERY_LIMIT
    assert q["arguments"]["x-dead-letter-routing-key"] == queues.MAIL_DEAD


def test_published_messages_are_persistent_and_confirmed(amqp_url: str) -> None:
    conn = connect(amqp_url)
    sent = fetched()
    Publisher(conn).publish(sent)

    with Connection(amqp_url) as plain:
        message = topology.work_queue(queues.MAIL_FETCHED).bind(plain.channel()).get(no_ack=True)

    assert message is not None
    assert message.delivery_info["routing_key"] == queues.MAIL_FETCHED
    assert message.properties["delivery_mode"] == 2
    assert MailFetched.model_validate_json(message.body) == sent
    conn.release()


def test_a_message_the_broker_gives_up_on_is_recorded_saying_what_the_broker_did(
    amqp_url: str, tmp_path: Path
) -> None:
    # The broker's limit is a backstop behind Mailroom's own count of crashes: it counts every
    # delivery without an ack, whatever ended it.
    conn = connect(amqp_url)
    Publisher(conn).publish(fetched(7))
    deliveries = 0
    while deliveries < queues.BROKER_DELIVERY_LIMIT + 10:
        with Connection(amqp_url) as worker:  # a worker that takes the message, then dies
            got = topology.work_queue(queues.MAIL_FETCHED).bind(worker.channel()).get(no_ack=False)
            if got is None:
                break
            deliveries += 1

    with Connection(amqp_url) as plain:
        dead = topology.dead_queue().bind(plain.channel()).get(no_ack=False)
        assert dead is not None
        settings = Settings(
            broker_url=amqp_url,
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
            secret_key=Fernet.generate_key().decode(),
            var_dir=tmp_path,
        )
        store = Store(settings.effective_database_url)
        store.migrate()
        poller = Poller(settings, connection=conn, store=store, clock=SystemClock())
        action = poller.handle_dead(delivery_of(queues.MAIL_DEAD, dead))

    assert deliveries == queues.BROKER_DELIVERY_LIMIT + 1
    assert action == "ack"
    with store.transaction() as c:
        [entry] = list_dead_letters(c)
    assert entry["mail_id"] == "mail-7"
    assert entry["stage"] == "parser"
    assert entry["error_class"] == "DeliveryLimitExceeded"
    assert "the broker dead-lettered this message from mail.fetched" in entry["error"]
    assert f"limit of {queues.BROKER_DELIVERY_LIMIT}" in entry["error"]
    assert "stopped or lost its broker connection" in entry["error"]
    assert entry["source"] == {"mailbox": "box", "ref": "k7"}
    conn.release()


def test_a_batch_is_published_whole_and_in_order_with_its_confirms(amqp_url: str) -> None:
    # A plain connection, as a worker's stage has: the publisher asks for confirms itself.
    publisher = Publisher(Connection(amqp_url))
    sent = [fetched(n) for n in range(300)]

    publisher.publish_all(sent)
    publisher.close()

    got = []
    with Connection(amqp_url) as plain:
        queue = topology.work_queue(queues.MAIL_FETCHED).bind(plain.channel())
        while (message := queue.get(no_ack=True)) is not None:
            got.append(MailFetched.model_validate_json(message.body).mail_id)
    assert got == [m.mail_id for m in sent]


def test_a_batch_is_not_taken_as_published_before_the_broker_confirms_it(
    rabbitmq, amqp_url: str
) -> None:  # type: ignore[no-untyped-def]
    publisher = Publisher(Connection(amqp_url))
    publisher.publish_all([fetched(0)])  # connected, the queues declared
    done = threading.Event()
    # The memory alarm: the broker takes no message in, so it confirms none.
    rabbitmq.rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
    try:
        worker = threading.Thread(
            target=lambda: (publisher.publish_all([fetched(n) for n in range(1, 20)]), done.set())
        )
        worker.start()
        waited = done.wait(2)
    finally:
        rabbitmq.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
    worker.join(30)
    publisher.close()

    assert not waited, "publish_all returned before the broker confirmed the batch"
    assert done.is_set(), "publish_all did not return once the broker confirmed the batch"
