"""Delivery reports (bounces) linked back to the request whose mail could not be delivered.

A report is matched by the Message-ID of the mail it returns, its Original-Envelope-Id, and its
own In-Reply-To and References: against the notifications Mailroom sent, then against the
mails on requests, in the report's help desk only. A matched report is kept on the request as
a note that names each recipient and why delivery failed; an unmatched one opens nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.mail import DeliveryReport, DeliveryStatus, MailValidated
from services.router.ports import RequestBook
from services.router.threading import MAX_THREAD_IDS, notices_of, on_a_request, thread_ids


@dataclass(frozen=True)
class Bounce:
    """Where a report goes: ``request_id`` with ``note``, or nowhere, for ``refusal``."""

    request_id: int | None
    note: str = ""
    refusal: str = ""


def link_bounce(msg: MailValidated, report: DeliveryReport, book: RequestBook) -> Bounce:
    ids = report_ids(msg, report)
    notices = notices_of(msg.helpdesk, ids, book) if ids else []
    if (notice := on_a_request(notices)) is not None:
        about = f"notification {notice.id} ({notice.topic})"
        return Bounce(notice.request_id, note=bounce_note(about, report))
    found = book.request_of_message_ids(msg.helpdesk, ids) if ids else None
    if found is not None:
        return Bounce(found, note=bounce_note("a mail of this request", report))
    return Bounce(None, refusal=_unmatched(report, notices[0].id if notices else None))


def report_ids(msg: MailValidated, report: DeliveryReport) -> list[str]:
    """The Message-IDs a report may be about, most telling first."""
    envelope = report.envelope_id or ""
    envelope_ids = [envelope, f"<{envelope.strip('<>')}>"] if envelope else []
    candidates = [report.original_message_id or "", *envelope_ids, *thread_ids(msg.mail)]
    return list(dict.fromkeys(c for c in candidates if c))[:MAX_THREAD_IDS]


def bounce_note(about: str, report: DeliveryReport) -> str:
    """``Delivery report about notification 7 (attachment_stripped): delivery to
    ann@example.org failed (status 5.1.1; smtp; 550 5.1.1 User unknown)``."""
    lines = [_recipient_line(r) for r in report.recipients] or ["no recipient named"]
    return f"Delivery report about {about}: " + "; ".join(lines)


def _recipient_line(r: DeliveryStatus) -> str:
    what = f"delivery to {r.address}" + (f" {r.action}" if r.action else "")
    details = "; ".join(d for d in (f"status {r.status}" if r.status else "", r.diagnostic) if d)
    return f"{what} ({details})" if details else what


def _unmatched(report: DeliveryReport, notice_id: int | None) -> str:
    if notice_id is not None:
        return (
            f"a delivery report about Mailroom's notification {notice_id}, which belongs to "
            "no request; it opens no request"
        )
    original = report.original_message_id
    about = f"mail {original}" if original else "a mail it does not name"
    return f"a delivery report about {about}, which Mailroom did not send; it opens no request"
