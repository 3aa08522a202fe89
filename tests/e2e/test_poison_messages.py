"""Messages that do not match their contract are dead-lettered, never half-processed."""

from __future__ import annotations

import json

from harness import Mailroom
from kombu import Connection

from contracts import queues
from services.runtime import topology


def publish_raw(url: str, queue: str, body: bytes) -> None:
    with Connection(url) as conn:
        producer = conn.Producer(exchange=topology.exchange())
        producer.publish(
            body,
            routing_key=queue,
            content_type="application/json",
            content_encoding="binary",
            delivery_mode=2,
            declare=[topology.queue(queue)],
        )


def test_a_message_breaking_its_contract_becomes_one_dead_letter_and_no_request(
    scaled: Mailroom,
) -> None:
    room = scaled
    room.use_demo_maildir()
    for key in list((room.maildir / "new").iterdir()):
        key.unlink()  # an empty mailbox: only the poison messages travel
    room.apply_settings()
    room.start_workers()
    url = room.env["MAILROOM_BROKER_URL"]
    wrong_types = {
        "kind": "mail.validated",
        "mail_id": "m-1",
        "helpdesk": "default",
        "source": {"mailbox": "demo", "ref": "k-1"},
        "raw_blob": 5,
        "mail": "nope",
    }
    publish_raw(url, queues.MAIL_VALIDATED, json.dumps(wrong_types).encode())
    publish_raw(url, queues.MAIL_FETCHED, b"\x00not json at all")

    room.wait_for(lambda: len(room.json("dlq", "list")) == 2, what="two dead letters")

    dead = {d["stage"]: d for d in room.json("dlq", "list")}
    assert dead["router"]["mail_id"] == "m-1"
    assert dead["router"]["error_class"] == "ContractError"
    assert "raw_blob" in dead["router"]["error"] and "mail" in dead["router"]["error"]
    assert dead["router"]["source"] == {"mailbox": "demo", "ref": "k-1"}
    assert dead["parser"]["mail_id"].startswith("unreadable-")
    assert room.json("requests", "list") == []
