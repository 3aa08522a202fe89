"""Mailroom's own notifications coming back into a mailbox (a forward, an alias, a
misconfigured address) are recognised, so they never open a request or join one."""

from __future__ import annotations

from contracts.mail import ParsedMail
from services.router.ports import RequestBook


def own_notification(mail: ParsedMail, book: RequestBook) -> str:
    """Why ``mail`` is one of Mailroom's own notifications; "" when it is not.

    Recognised by its Message-ID, which the notifier stores for every email it sends, or by
    the notifier's marks (``Auto-Submitted: auto-generated`` and an ``X-Mailroom-*`` header)
    when the store no longer knows it.
    """
    notice = next(iter(book.notifications_by_message_ids([mail.message_id])), None)
    if notice is not None:
        return (
            f"Mailroom's own notification {notice.id} ({notice.topic}) came back "
            f"(Message-ID {mail.message_id}); it opens no request"
        )
    if mail.sent_by_mailroom:
        return (
            "Mailroom's own notification came back (Auto-Submitted: auto-generated and an "
            "X-Mailroom-* header); it opens no request"
        )
    return ""
