"""The notifier's adapters: the outbox in the store and SMTP."""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import sqlalchemy as sa

from contracts.notify import Notify
from contracts.settings import OutgoingSettings
from services.notifier.handler import OutboxEntry
from services.runtime import tables
from services.runtime.errors import InfraError
from services.runtime.store import Store, as_utc, insert_ignoring_conflict


class SqlOutbox:
    """Each call commits on its own: the entry must exist before the mail is sent."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, msg: Notify, recipients: list[str], at: datetime) -> OutboxEntry:
        t = tables.notifications
        values = dict(
            key=msg.key,
            mail_id=msg.mail_id,
            helpdesk_id=msg.helpdesk,
            topic=msg.topic,
            channel=msg.channel,
            recipients=recipients,
            subject=msg.subject,
            body=msg.body,
            in_reply_to=msg.in_reply_to,
            created_at=at,
        )
        with self._store.transaction() as conn:
            insert_ignoring_conflict(conn, t, values)
            row = conn.execute(sa.select(t.c.id, t.c.sent_at).where(t.c.key == msg.key)).one()
        return OutboxEntry(id=row.id, sent_at=as_utc(row.sent_at))

    def mark_sent(self, entry_id: int, at: datetime) -> None:
        self._update(entry_id, sent_at=at, error=None)

    def mark_failed(self, entry_id: int, error: str) -> None:
        self._update(entry_id, error=error)

    def _update(self, entry_id: int, **values: object) -> None:
        t = tables.notifications
        with self._store.transaction() as conn:
            conn.execute(t.update().where(t.c.id == entry_id).values(**values))


class SmtpSender:
    """Sends through the help desk's outgoing server (``security``: none, starttls or ssl)."""

    def __init__(self, outgoing: OutgoingSettings, *, timeout: float = 30) -> None:
        self._cfg = outgoing
        self._timeout = timeout

    def send(self, to: list[str], subject: str, body: str, in_reply_to: str | None) -> None:
        mail = self._compose(to, subject, body, in_reply_to)
        try:
            with self._connect() as smtp:
                if self._cfg.username:
                    smtp.login(self._cfg.username, self._cfg.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            where = f"{self._cfg.host}:{self._cfg.port}"
            raise InfraError(f"SMTP server {where} did not take the mail: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        cfg = self._cfg
        if cfg.security == "ssl":
            context = ssl.create_default_context()
            return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=self._timeout, context=context)
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=self._timeout)
        if cfg.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def _compose(
        self, to: list[str], subject: str, body: str, in_reply_to: str | None
    ) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._cfg.from_address or "mailroom@localhost"
        mail["To"] = ", ".join(to)
        mail["Subject"] = subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain="mailroom.local")
        # Marks our mail as automatic, so well-behaved auto-responders do not answer it.
        mail["Auto-Submitted"] = "auto-generated"
        if in_reply_to:
            mail["In-Reply-To"] = in_reply_to
            mail["References"] = in_reply_to
        mail.set_content(body)
        return mail
