"""What admins and support reps are told about a mailbox (pure: settings and facts in,
``Notify`` commands out): connectivity alerts, recovery, a full error folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.notify import Notify
from contracts.settings import HelpdeskSettings


@dataclass(frozen=True)
class People:
    """Admins get bell notifications, support reps emails."""

    admins: tuple[str, ...]
    support_reps: tuple[str, ...]

    @classmethod
    def of(cls, desk: HelpdeskSettings) -> People:
        n = desk.notifications
        return cls(tuple(n.admins), tuple(n.support_reps))


def _notices(
    mailbox: str, helpdesk: str, topic: str, at: datetime, people: People, subject: str, body: str
) -> list[Notify]:
    # One mail_id per mailbox, one key per occurrence: a redelivery sends nothing twice,
    # a later alert is a new notification.
    out = []
    for channel, to in (("bell", people.admins), ("email", people.support_reps)):
        if to:
            out.append(
                Notify(
                    mail_id=f"mailbox-{mailbox}",
                    helpdesk=helpdesk,
                    key=f"{topic}:{mailbox}:{at.isoformat()}:{channel}",
                    topic=topic,
                    channel=channel,
                    to=list(to),
                    subject=subject,
                    body=body,
                )
            )
    return out


def connectivity_alert(
    mailbox: str, helpdesk: str, error: str, failures: int, people: People, at: datetime
) -> list[Notify]:
    subject = f"Mailbox {mailbox} cannot be reached"
    body = (
        f"Mailroom failed to connect to mailbox {mailbox} {failures} times in a row, so no new "
        f"mail is being fetched from it.\n\nLast error: {error}\n\n"
        f"Fix what the error names, then check with `mailroom mailbox test {mailbox}`."
    )
    return _notices(mailbox, helpdesk, "connectivity", at, people, subject, body)


def connectivity_recovered(
    mailbox: str, helpdesk: str, people: People, at: datetime
) -> list[Notify]:
    subject = f"Mailbox {mailbox}: fetching recovered"
    body = f"Mailroom connects to mailbox {mailbox} again; mail is being fetched as usual."
    return _notices(mailbox, helpdesk, "connectivity_recovered", at, people, subject, body)


def error_folder_full(
    mailbox: str, helpdesk: str, count: int, stop_after: int, people: People, at: datetime
) -> list[Notify]:
    subject = f"Mailbox {mailbox}: fetching stopped, error folder full"
    body = (
        f"The error folder of mailbox {mailbox} holds {count} mails (the limit is {stop_after}), "
        "so Mailroom stopped fetching from it.\n\nSee why with `mailroom errors download`, "
        f"then `mailroom errors move-to-inbox {mailbox}` moves them back and resumes fetching."
    )
    return _notices(mailbox, helpdesk, "error_folder_full", at, people, subject, body)


def reauthorization_needed(
    mailbox: str, helpdesk: str, error: str, people: People, at: datetime
) -> list[Notify]:
    """To admins only (bell): only they can sign in again."""
    subject = f"Mailbox {mailbox}: OAuth authorization needed, fetching paused"
    body = (
        f"The authorization server refused Mailroom's access to mailbox {mailbox}, so "
        f"fetching from it is paused.\n\n{error}\n\nRe-authorize with "
        f"`mailroom oauth authorize {mailbox}`; that resumes fetching."
    )
    admins = People(people.admins, ())
    return _notices(mailbox, helpdesk, "oauth_reauthorize", at, admins, subject, body)


def refresh_token_lapsing(
    mailbox: str, helpdesk: str, lapses_at: datetime, people: People, at: datetime
) -> list[Notify]:
    """To admins only (bell); one per lapse date (the key holds the date, not ``at``)."""
    subject = f"Mailbox {mailbox}: OAuth authorization lapses on {lapses_at:%Y-%m-%d}"
    body = (
        f"Mailbox {mailbox}'s OAuth refresh token is expected to lapse on "
        f"{lapses_at:%Y-%m-%d %H:%M} UTC, when it will have gone unused for too long (90 days "
        "at Microsoft). Each successful fetch renews it: check that the mailbox is enabled and "
        f"fetching (`mailroom mailbox show {mailbox}`), or re-authorize with "
        f"`mailroom oauth authorize {mailbox}`."
    )
    admins = People(people.admins, ())
    return _notices(mailbox, helpdesk, "oauth_lapsing", lapses_at, admins, subject, body)
