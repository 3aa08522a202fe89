"""Which request a mail answers: by its threading headers, then by the subject tag.

A mail joins a request when In-Reply-To or References name the Message-ID of a mail on that
request, or of a notification Mailroom sent about one of its mails; otherwise when its subject
carries the request's tag. Only requests of the mail's own help desk are found: a match in
another help desk is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.mail import MailValidated, ParsedMail
from services.router.ports import RequestBook, SentNotice
from services.router.tags import tagged_request_ids

#: At most this many Message-IDs of one mail are looked up. References grows by one id per
#: reply, and a hostile mail may carry thousands: the newest ones are the ones that matter.
MAX_THREAD_IDS = 100


@dataclass(frozen=True)
class Thread:
    """The request a mail joins, or None; ``refusal`` says why it may open none either.

    ``rule`` names what decided: ``thread_headers`` (In-Reply-To or References name a mail
    of the request), ``notification_reply`` (they name a notification about one of its
    mails), ``subject_tag``, or ``reply_to_notification`` for the refusal; "" for no match.
    """

    request_id: int | None
    refusal: str = ""
    rule: str = ""


def thread_ids(mail: ParsedMail) -> list[str]:
    """The Message-IDs ``mail`` answers, newest first: In-Reply-To, then References from the
    end; at most ``MAX_THREAD_IDS``."""
    newest_first = [*mail.in_reply_to, *reversed(mail.references)]
    return list(dict.fromkeys(newest_first))[:MAX_THREAD_IDS]


def find_thread(msg: MailValidated, book: RequestBook) -> Thread:
    ids = thread_ids(msg.mail)
    notices: list[SentNotice] = []
    if ids:
        if (found := book.request_of_message_ids(msg.helpdesk, ids)) is not None:
            return Thread(found, rule="thread_headers")
        notices = notices_of(msg.helpdesk, ids, book)
        if (notice := on_a_request(notices)) is not None:
            return Thread(notice.request_id, rule="notification_reply")
    for request_id in tagged_request_ids(msg.mail.subject):
        if book.request_exists(msg.helpdesk, request_id):
            return Thread(request_id, rule="subject_tag")
    if notices:
        return Thread(None, refusal=_answers_notice(notices[0]), rule="reply_to_notification")
    return Thread(None)


def notices_of(helpdesk: str, message_ids: list[str], book: RequestBook) -> list[SentNotice]:
    """The help desk's notifications sent with one of ``message_ids``."""
    return [n for n in book.notifications_by_message_ids(message_ids) if n.helpdesk == helpdesk]


def on_a_request(notices: list[SentNotice]) -> SentNotice | None:
    """The first of ``notices`` about a mail that is on a request."""
    return next((n for n in notices if n.request_id is not None), None)


def _answers_notice(notice: SentNotice) -> str:
    # e.g. a support rep answering a "mail could not be processed" alert: no customer's
    # request, and opening one would put Mailroom's own mail into the queue.
    return (
        f"a reply to Mailroom's notification {notice.id} ({notice.topic}), which belongs to "
        "no request; replies to notifications open no request"
    )
