"""bytes -> contract -> handler -> publish -> ack, or a DeadLetter. Every stage uses this.

Policy (STYLE P7): a ``MailError`` or any unexpected exception means the mail is the
problem: one ``DeadLetter`` goes to ``mail.dead`` and the message is acked, no retry.
An ``InfraError`` is retried with capped, jittered backoff up to ``max_attempts`` and then
dead-lettered the same way. A message that does not match its contract is dead-lettered
with the validation error before any handler sees it.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contracts import queues
from contracts.base import Envelope
from contracts.dead import DeadLetter
from contracts.ids import content_hash
from contracts.mail import SourceRef
from contracts.registry import CONTRACT_OF_QUEUE
from services.runtime.bus import Delivery
from services.runtime.crypto import SecretBox
from services.runtime.errors import InfraError
from services.runtime.mail_text import header_block, mime_tree
from services.runtime.ports import BlobStore

log = logging.getLogger(__name__)

Handler = Callable[[Any], Sequence[Envelope]]

#: Queues whose messages are replayed as they were: a notification is not rebuilt by running
#: its mail through the pipeline again (its mail may well have become a request).
REPLAYED_AS_IS = frozenset({queues.NOTIFY})


@dataclass
class ErrorLog:
    """Writes the encrypted error log of a failed mail as a blob; returns its reference."""

    blobs: BlobStore
    box: SecretBox

    def write(self, stage: str, body: bytes, exc: BaseException) -> str:
        """The log holds customer data (headers, addresses), so it is only stored encrypted."""
        text = "\n".join(
            [
                f"stage: {stage}",
                f"error: {type(exc).__name__}: {exc}",
                *self._mail_details(_fields_of(body)),
                "",
                "".join(traceback.format_exception(exc)),
                "message:",
                body.decode("utf-8", "replace"),
            ]
        )
        return self.blobs.put(self.box.encrypt(text.encode()))

    def keep_payload(self, queue: str, body: bytes) -> str | None:
        """The failed message, encrypted, when replaying it cannot start from the raw mail."""
        return self.blobs.put(self.box.encrypt(body)) if queue in REPLAYED_AS_IS else None

    def _mail_details(self, fields: dict[str, Any]) -> list[str]:
        found = fields.get("source")
        source = found if isinstance(found, dict) else {}
        lines = [f"mailbox: {source.get('mailbox', '?')}", f"mail: {source.get('ref', '?')}"]
        try:
            raw = self.blobs.get(str(fields["raw_blob"]))
        except (KeyError, InfraError):
            return [*lines, "raw mail: not available"]
        return [
            *lines,
            f"size: {len(raw)} bytes",
            "",
            "headers:",
            header_block(raw),
            "",
            "MIME structure:",
            mime_tree(raw),
        ]


@dataclass
class Dispatcher:
    """Runs one stage's handler for each delivery of its queue.

    ``publish`` must raise ``InfraError`` when the broker does not confirm; the delivery is then
    requeued (never acked), so nothing is lost.
    """

    stage: str
    handler: Handler
    publish: Callable[[Envelope], None]
    error_log: ErrorLog
    max_attempts: int = 3
    sleep: Callable[[float], None] | None = None

    def __call__(self, delivery: Delivery) -> str:
        try:
            message = CONTRACT_OF_QUEUE[delivery.queue].model_validate_json(delivery.body)
        except ValidationError as exc:
            return self._dead(delivery, _fields_of(delivery.body), exc, "ContractError")
        retrying = self._retrying(message)
        try:
            outputs = retrying(self.handler, message)
        except Exception as exc:  # noqa: BLE001 - any failure of a mail ends in mail.dead
            calls = int(retrying.statistics.get("attempt_number", 1))
            fields = message.model_dump(by_alias=True)
            return self._dead(delivery, fields, exc, attempts=calls)
        try:
            for out in outputs:
                self.publish(out)
        except InfraError:
            log.warning("stage=%s mail_id=%s publish failed; requeued", self.stage, message.mail_id)
            return "requeue"
        return "ack"

    def _retrying(self, message: Envelope) -> Retrying:
        def warn(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "stage=%s mail_id=%s attempt=%s failed: %s; retrying",
                self.stage,
                message.mail_id,
                state.attempt_number,
                error,
            )

        return Retrying(
            retry=retry_if_exception_type(InfraError),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(multiplier=0.5, max=10),
            before_sleep=warn,
            reraise=True,
            sleep=self.sleep or time.sleep,
        )

    def _dead(
        self,
        delivery: Delivery,
        fields: dict[str, Any],
        exc: BaseException,
        error_class: str = "",
        attempts: int = 1,
    ) -> str:
        try:
            log_blob = self.error_log.write(self.stage, delivery.body, exc)
            payload_blob = self.error_log.keep_payload(delivery.queue, delivery.body)
        except InfraError as store_down:
            log.warning("stage=%s error log not written (%s); requeued", self.stage, store_down)
            return "requeue"
        dead = dead_letter_for(
            self.stage,
            delivery,
            fields,
            exc,
            log_blob,
            error_class or type(exc).__name__,
            attempts=max(delivery.attempt, attempts),
            payload_blob=payload_blob,
        )
        log.error(
            "stage=%s mail_id=%s attempt=%s dead-lettered: %s",
            self.stage,
            dead.mail_id,
            dead.attempts,
            dead.error_class,
        )
        try:
            self.publish(dead)
        except InfraError:
            return "requeue"
        return "ack"


def dead_letter_for(
    stage: str,
    delivery: Delivery,
    fields: dict[str, Any],
    exc: BaseException | str,
    log_blob: str | None,
    error_class: str,
    attempts: int | None = None,
    payload_blob: str | None = None,
    queue: str | None = None,
) -> DeadLetter:
    """The DeadLetter of a failed delivery, keeping whatever identity the message still had.

    ``queue``: where the message failed, when not the queue it was delivered from (the
    broker dead-letters a message to ``mail.dead`` after too many deliveries elsewhere).
    """
    queue = queue or delivery.queue
    return DeadLetter(
        mail_id=_entry_id(queue, delivery.body, fields),
        helpdesk=fields.get("helpdesk") if isinstance(fields.get("helpdesk"), str) else None,
        source=_source_of(fields),
        stage=stage,
        error_class=error_class,
        error=_describe(exc),
        attempts=attempts or delivery.attempt,
        log_blob=log_blob,
        queue=queue,
        payload_blob=payload_blob,
    )


def _entry_id(queue: str, body: bytes, fields: dict[str, Any]) -> str:
    """A failed notification gets an id of its own: its mail has an outcome of its own, and
    one mail may have several notifications."""
    if queue == queues.NOTIFY and isinstance(fields.get("key"), str):
        return "notify-" + content_hash(fields["key"].encode())[:32]
    return str(fields.get("mail_id") or "unreadable-" + content_hash(body)[:20])


def _describe(exc: BaseException | str) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors()]
        return "message does not match its contract: " + "; ".join(parts[:10])
    return str(exc) or type(exc).__name__


def _fields_of(body: bytes) -> dict[str, Any]:
    """Best-effort fields of a message that failed its contract."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _source_of(fields: dict[str, Any]) -> SourceRef | None:
    try:
        return SourceRef.model_validate(fields.get("source"))
    except ValidationError:
        return None
