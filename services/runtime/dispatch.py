"""bytes -> contract -> handler -> publish -> ack, or a DeadLetter. Every stage uses this.

Policy (STYLE P7): a ``MailError`` or any unexpected exception means the mail is the
problem: one ``DeadLetter`` goes to ``mail.dead`` and the message is acked, no retry.
An ``InfraError`` (the store refused a write, say) is retried with capped, jittered backoff
up to ``max_attempts`` and then dead-lettered the same way. A message that does not match
its contract is dead-lettered with the validation error before any handler sees it.

An ``Outage`` (the broker or the store cannot be reached) is nobody's mail's fault: it is
never retried here, never dead-lettered and never counted; it propagates, and the worker
waits it out and handles the same mail again (``outages.py``). A redelivered mail whose
handling began ``DELIVERY_LIMIT`` times without ending (its worker died each time) is set
aside as ``DeliveryLimitExceeded``.

Each handling that ends is counted in ``metrics`` with its outcome (``handled`` or
``dead_lettered``) and its time, retries included; one cut short by an outage is not.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
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
from services.runtime.errors import InfraError, Outage, retried_in_place
from services.runtime.mail_text import header_block, mime_tree
from services.runtime.metrics import DEAD_LETTERED, HANDLED, NoMetrics
from services.runtime.ports import BlobStore, DeliveryStarts, Metrics

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

    ``publish`` must raise ``BrokerOutage`` when the broker does not confirm; that and a
    ``StoreOutage`` propagate to the worker, which acks nothing, waits, and hands the mail
    over again. ``starts`` counts the handlings of redelivered mail that began and never
    ended; without it (the in-process broker) nothing is counted.
    """

    stage: str
    handler: Handler
    publish: Callable[[Envelope], None]
    error_log: ErrorLog
    max_attempts: int = 3
    sleep: Callable[[float], None] | None = None
    starts: DeliveryStarts | None = None
    metrics: Metrics = field(default_factory=NoMetrics)
    monotonic: Callable[[], float] = time.monotonic
    #: Starts cut short by an outage that could not be taken back (the store was down).
    _unforgiven: dict[str, int] = field(default_factory=dict, init=False)

    def __call__(self, delivery: Delivery) -> str:
        began = self.monotonic()
        if self.starts is None or not delivery.redelivered:
            outcome = self._dispatch(delivery, deaths=0)  # a first delivery: nothing to count
        else:
            outcome = self._counted(self.starts, delivery)
        self.metrics.handled(self.stage, outcome)
        self.metrics.handling_took(self.stage, self.monotonic() - began)
        return "ack"

    def _counted(self, starts: DeliveryStarts, delivery: Delivery) -> str:
        """Handle a redelivered message, counting this start until it ends.

        ``deaths``: the deliveries of this message that ended without it being finished:
        the first one (it came back, so it did not finish) and each start on record but
        this one. A start cut short by an outage is taken back; when the store is what is
        down, the next handover in this process reuses it instead. Returns the outcome.
        """
        key = f"{delivery.queue}:{content_hash(delivery.body)}"
        deaths = self._unforgiven.pop(key, None) or starts.begin(key)
        try:
            outcome = self._dispatch(delivery, deaths=deaths)
            starts.finish(key)
        except Outage:
            try:
                starts.forgive(key)
            except Outage:
                self._unforgiven[key] = deaths
            raise
        return outcome

    def _dispatch(self, delivery: Delivery, *, deaths: int) -> str:
        """Handle one delivery; returns its outcome, ``HANDLED`` or ``DEAD_LETTERED``."""
        if deaths >= queues.DELIVERY_LIMIT:
            return self._set_aside(delivery, deaths)
        try:
            message = CONTRACT_OF_QUEUE[delivery.queue].model_validate_json(delivery.body)
        except ValidationError as exc:
            return self._dead(delivery, _fields_of(delivery.body), exc, "ContractError")
        retrying = self._retrying(message)
        try:
            outputs = retrying(self.handler, message)
        except Outage:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a mail ends in mail.dead
            calls = int(retrying.statistics.get("attempt_number", 1))
            fields = message.model_dump(by_alias=True)
            return self._dead(delivery, fields, exc, attempts=calls)
        try:
            for out in outputs:
                self.publish(out)
        except Outage as exc:
            log.warning(
                "stage=%s mail_id=%s publish failed, not acked; handled again once the %s is "
                "back: %s",
                self.stage,
                message.mail_id,
                exc.what,
                exc,
            )
            raise
        return HANDLED

    def _set_aside(self, delivery: Delivery, deaths: int) -> str:
        error = RuntimeError(
            f"{deaths} deliveries of this message ended without the {self.stage} worker "
            f"finishing it: the worker stopped (crashed or was killed) while handling it each "
            f"time. Set aside so it cannot stop the {self.stage} again; "
            "`mailroom dlq replay` tries it once more"
        )
        fields = _fields_of(delivery.body)
        return self._dead(delivery, fields, error, "DeliveryLimitExceeded", attempts=deaths)

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
            retry=retry_if_exception(retried_in_place),
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
        """Publish the mail's DeadLetter, with its encrypted log; an outage propagates.
        Returns ``DEAD_LETTERED``."""
        log_blob: str | None = None
        payload_blob: str | None = None
        try:
            log_blob = self.error_log.write(self.stage, delivery.body, exc)
            payload_blob = self.error_log.keep_payload(delivery.queue, delivery.body)
        except Outage:
            raise
        except InfraError as refused:  # the store refused the log: the entry still goes out
            log.warning("stage=%s error log not written: %s", self.stage, refused)
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
        self.publish(dead)
        self.metrics.dead_lettered(self.stage)
        return DEAD_LETTERED


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
