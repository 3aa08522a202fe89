"""The session fixtures give real servers with the features the pipeline relies on."""

import uuid

import psycopg
import pytest
from kombu import Connection, Consumer, Exchange, Queue
from servers import find_binary

DEADLINE = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.infra
def test_rabbitmq_quorum_queue_dead_letters_after_delivery_limit(rabbitmq):
    # Given a quorum queue allowing 2 redeliveries, dead-lettering to a second queue
    dlx = Exchange(unique("dlx"), type="direct", durable=True)
    dead = Queue(
        unique("dead"),
        dlx,
        routing_key="dead",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    work_exchange = Exchange(unique("work"), type="direct", durable=True)
    work = Queue(
        unique("work"),
        work_exchange,
        routing_key="work",
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": dlx.name,
            "x-dead-letter-routing-key": "dead",
        },
    )
    deliveries = []

    def reject(body, message):
        deliveries.append(message.delivery_info["redelivered"])
        message.reject(requeue=True)

    with Connection(rabbitmq.url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.default_channel
        dead(channel).declare()
        work(channel).declare()

        # When a persistent, confirmed message is rejected with requeue on every delivery
        conn.Producer().publish(
            {"mail": 1},
            exchange=work_exchange,
            routing_key="work",
            delivery_mode="persistent",
            retry=False,
        )
        with Consumer(channel, [work], callbacks=[reject], prefetch_count=1):
            while len(deliveries) < 3:
                conn.drain_events(timeout=DEADLINE)
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=1.0)

        # Then it was delivered 3 times and now sits in the dead-letter queue
        assert deliveries == [False, True, True]
        dead_letter = dead(channel).get(no_ack=True)
        assert dead_letter is not None
        assert dead_letter.payload == {"mail": 1}
        assert dead_letter.properties["delivery_mode"] == 2
        assert work(channel).get(no_ack=True) is None

    listed = rabbitmq.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "type")
    assert f"{work.name}\tquorum" in listed.splitlines()


def table_names(url: str) -> set[str]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


@pytest.mark.infra
def test_postgres_new_database_gives_separate_empty_databases(postgres):
    # Given two new databases
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    assert table_names(first) == table_names(second) == set()

    # When a table is created in the first
    with psycopg.connect(first.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE requests (id integer PRIMARY KEY)")

    # Then only the first has it
    assert table_names(first) == {"requests"}
    assert table_names(second) == set()


def test_missing_binary_names_the_package():
    with pytest.raises(RuntimeError, match=r"'no-such-package'.*make test"):
        find_binary("mailroom-no-such-binary", "no-such-package")
