"""Reading what arrives on ``mail.dead``: our DeadLetter, or a message the broker gave up on."""

from __future__ import annotations

import json

from pydantic import ValidationError

from contracts import queues
from contracts.dead import DeadLetter
from services.runtime.bus import Delivery
from services.runtime.dispatch import ErrorLog, dead_letter_for

#: Which stage consumes each work queue, to name the stage that kept dying.
STAGE_OF_QUEUE = {
    queues.MAIL_FETCHED: "parser",
    queues.MAIL_PARSED: "validator",
    queues.MAIL_VALIDATED: "router",
    queues.NOTIFY: "notifier",
}


def decode_dead(delivery: Delivery, error_log: ErrorLog) -> DeadLetter:
    """Always a DeadLetter: a message dead-lettered by the broker (``x-death``) is described
    by the queue and the count of deliveries that ended without an ack."""
    try:
        return DeadLetter.model_validate_json(delivery.body)
    except ValidationError as exc:
        problem: Exception = exc
    death = _first_death(delivery.headers)
    queue = str(death.get("queue", delivery.queue))
    stage = STAGE_OF_QUEUE.get(queue, queue)
    fields = _fields(delivery.body)
    if death:
        problem = RuntimeError(_broker_gave_up(delivery, death, queue, stage))
        error_class = "DeliveryLimitExceeded"
    else:
        error_class = "ContractError"
    log_blob = error_log.write(stage, delivery.body, problem)
    payload_blob = error_log.keep_payload(queue, delivery.body)
    return dead_letter_for(
        stage,
        delivery,
        fields,
        problem,
        log_blob,
        error_class,
        payload_blob=payload_blob,
        queue=queue,
    )


def _broker_gave_up(delivery: Delivery, death: dict, queue: str, stage: str) -> str:  # type: ignore[type-arg]
    """What the broker did, without guessing why: it counts every delivery that ended
    without an ack (a worker that died or was stopped, a lost connection, a restart)."""
    deliveries = delivery.headers.get("x-delivery-count")
    times = f"{deliveries} times" if deliveries else "too many times"
    return (
        f"the broker dead-lettered this message from {queue} (reason {death.get('reason')}): "
        f"it was delivered {times} without being acknowledged, past the broker's limit of "
        f"{queues.BROKER_DELIVERY_LIMIT}; each time the {stage} worker holding it stopped or "
        "lost its broker connection before finishing it"
    )


def _first_death(headers: dict) -> dict:  # type: ignore[type-arg]
    deaths = headers.get("x-death") or []
    return dict(deaths[0]) if deaths else {}


def _fields(body: bytes) -> dict:  # type: ignore[type-arg]
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
