"""What ``mail.dead`` brings back to the poller: the entry, the people told, the original
moved to the error folder, and the error folder's count (which may stop fetching)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from contracts.dead import DeadLetter
from contracts.mail import SourceRef
from services.poller.adapters import SqlDeadLetterLog
from services.poller.context import PollerContext
from services.poller.dead import decode_dead
from services.poller.handler import DeadLetterKept, ErrorNotices, record_dead_letter
from services.poller.notices import error_folder_full
from services.poller.sources.base import MailSource
from services.runtime import tables
from services.runtime.bus import Delivery, Publisher
from services.runtime.dispatch import ErrorLog
from services.runtime.errors import ConfigError, InfraError, Outage, retried_in_place
from services.runtime.mail_text import message_id_of

log = logging.getLogger(__name__)

#: How much of a raw mail is read for its Message-ID: the header block, in practice.
_HEAD_BYTES = 64 * 1024


class DeadLetterHandler:
    """The consumer of ``mail.dead``; acks only once the entry is recorded."""

    def __init__(self, ctx: PollerContext, publisher: Publisher) -> None:
        self._ctx = ctx
        self._publisher = publisher

    def __call__(self, delivery: Delivery) -> str:
        """Record the entry, tell the reps, move the original to the error folder; then ack.

        An outage of the store or the broker propagates (the worker waits it out and hands
        over the same delivery again); a store that refuses the entry three times requeues.
        """
        error_log = ErrorLog(self._ctx.blobs, self._ctx.box)
        try:
            dead = decode_dead(delivery, error_log)
            for attempt in _store_retries():
                with attempt:
                    outcome = self._record(dead)
        except Outage:
            raise
        except InfraError as exc:
            log.error("dead letter not recorded, requeued: %s", exc)
            return "requeue"
        self._publisher.publish_all(outcome.notices)
        if outcome.kept:
            self._move_to_error_folder(dead)
        return "ack"

    def _record(self, dead: DeadLetter) -> DeadLetterKept:
        notices = ErrorNotices(enabled=False, support_reps=())
        if dead.helpdesk:
            notices = self._error_notices(dead)
        with self._ctx.store.transaction() as conn:
            return record_dead_letter(
                dead, dead=SqlDeadLetterLog(conn), notices=notices, now=self._ctx.clock.now()
            )

    def _error_notices(self, dead: DeadLetter) -> ErrorNotices:
        try:
            desk = self._ctx.config.helpdesk(dead.helpdesk or "")
            notify = (
                self._ctx.config.mailbox(dead.source.mailbox).settings.error_folder.notify
                if dead.source
                else False
            )
        except ConfigError:
            return ErrorNotices(enabled=False, support_reps=())
        return ErrorNotices(enabled=notify, support_reps=tuple(desk.notifications.support_reps))

    def _move_to_error_folder(self, dead: DeadLetter) -> None:
        if dead.source is None or self._moved_already(dead.mail_id):
            return  # a delivery of this entry before this one moved the mail
        error = self._try_move(dead.mail_id, dead.source)
        with self._ctx.store.transaction() as conn:
            moved_at = None if error else self._ctx.clock.now()
            SqlDeadLetterLog(conn).mark_moved(dead.mail_id, moved_at, error)
        if error is None:
            self._count_error(dead.source.mailbox)

    def _moved_already(self, mail_id: str) -> bool:
        with self._ctx.store.transaction() as conn:
            return SqlDeadLetterLog(conn).moved_already(mail_id)

    def _count_error(self, name: str) -> None:
        """One more mail in the error folder; at ``stop_after`` fetching stops and people hear."""
        count = self._ctx.health.count_error(name)
        try:
            state = self._ctx.config.mailbox(name)
        except ConfigError:
            return
        stop_after = state.settings.error_folder.stop_after
        if count >= stop_after and state.enabled:
            reason = (
                f"the error folder holds {count} mails (stop_after {stop_after}); "
                f"`mailroom errors move-to-inbox {name}` resumes fetching"
            )
            self._ctx.health.pause(name, reason, by_errors=True)
            self._ctx.tell(
                state,
                lambda people, at: error_folder_full(
                    name, state.helpdesk, count, stop_after, people, at
                ),
            )

    def _try_move(self, mail_id: str, source: SourceRef) -> str | None:
        """Move one mail; returns why it was not moved, or None when it was."""
        try:
            state = self._ctx.config.mailbox(source.mailbox)
            if not state.settings.error_folder.enabled:
                return "the mailbox's error folder is disabled"
            box = self._ctx.open_mailbox(state)
            try:
                if not box.supports_error_folder:
                    return f"protocol {state.settings.protocol} has no folders"
                box.move_to_error_folder([source.ref])
                if not self._in_error_folder(box, mail_id, source.ref):
                    return (
                        f"the error folder does not hold mail {source.ref} after the move: "
                        "it was no longer in the mailbox (deleted or moved meanwhile)"
                    )
            finally:
                box.close()
        except Outage:
            raise  # the store is down, not the mailbox: try again once it is back
        except (ConfigError, InfraError) as exc:
            log.warning(
                "mailbox=%s could not move %s to the error folder: %s",
                source.mailbox,
                source.ref,
                exc,
            )
            return str(exc)
        return None

    def _in_error_folder(self, box: MailSource, mail_id: str, ref: str) -> bool:
        """Whether the folder holds the mail: by its ref, or by its Message-ID where the folder
        gives it a ref of its own (IMAP). A mail with neither cannot be checked: taken as
        moved, as the source said."""
        held = box.error_folder_message_ids()
        if ref in held:
            return True
        message_id = self._message_id(mail_id)
        return message_id is None or message_id in held.values()

    def _message_id(self, mail_id: str) -> str | None:
        f = tables.fetched_mails
        query = sa.select(f.c.raw_sha256).where(f.c.mail_id == mail_id)
        with self._ctx.store.transaction() as conn:
            sha = conn.execute(query).scalar()
        try:
            return message_id_of(self._ctx.blobs.get(sha)[:_HEAD_BYTES]) if sha else None
        except KeyError:
            return None


def _store_retries() -> Retrying:
    return Retrying(
        retry=retry_if_exception(retried_in_place),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.5, max=5),
        reraise=True,
    )
