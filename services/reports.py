"""Read-side views for the command line: what users see with ``--json`` and in tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.runtime import tables
from services.runtime.mail_text import header_summary
from services.runtime.ports import BlobStore
from services.runtime.store import as_utc
from services.runtime.store_gauges import MailboxFigures, StoreFigures

OUTCOME_KEYS = {
    "request_created": "requests_created",
    "conversation_added": "conversations_added",
    "duplicate": "duplicates",
    "rejected": "rejected",
    "dead_lettered": "dead_lettered",
}
#: How much of a raw mail is read to show its From and Subject: the header block, in practice.
_HEAD_BYTES = 64 * 1024


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


@dataclass
class RunSummary:
    """What one ``mailroom run --once`` did. Every fetched or recovered mail is exactly one
    outcome (or still in flight)."""

    fetched: int = 0
    #: Mails an interrupted run had fetched and left without an outcome, finished by this one.
    recovered: int = 0
    requests_created: int = 0
    conversations_added: int = 0
    duplicates: int = 0
    rejected: int = 0
    attachments_stripped: int = 0
    dead_lettered: int = 0
    notifications: int = 0
    in_flight: int = 0
    mails: list[dict[str, Any]] = field(default_factory=list)
    stripped: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    mailbox_errors: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    DETAILS = ("mails", "stripped", "dead", "mailbox_errors", "totals")

    def counts(self) -> dict[str, int]:
        data = asdict(self)
        return {k: v for k, v in data.items() if isinstance(v, int)}


def run_summary(
    conn: sa.Connection,
    mail_ids: list[str],
    since: datetime | None = None,
    recovered: Sequence[str] = (),
) -> RunSummary:
    """What became of the mails a run handled: ``mail_ids`` fetched, and ``recovered`` ones
    an interrupted run had fetched. A mail whose outcome was made before ``since`` (fetched
    again: marked unread, or copied back) made nothing new in this run: a duplicate."""
    fetched = list(dict.fromkeys(mail_ids))
    carried = [i for i in dict.fromkeys(recovered) if i not in set(fetched)]
    ids = fetched + carried
    summary = RunSummary(fetched=len(fetched), recovered=len(carried))
    outcomes = _outcomes(conn, ids)
    if since is not None:
        for outcome in outcomes.values():
            _count_earlier_as_duplicate(outcome, since)
    for outcome in outcomes.values():
        key = OUTCOME_KEYS[outcome["outcome"]]
        setattr(summary, key, getattr(summary, key) + 1)
    fresh = [i for i in ids if not outcomes.get(i, {}).get("earlier")]
    summary.in_flight = len(ids) - len(outcomes)
    summary.mails = [
        {"mail_id": i, **_public(outcomes.get(i, {"outcome": "in_flight"}))} for i in ids
    ]
    summary.stripped = _stripped(conn, fresh)
    summary.attachments_stripped = len(summary.stripped)
    summary.dead = [d for d in list_dead_letters(conn) if d["mail_id"] in set(fresh)]
    n = tables.notifications
    made: sa.ColumnElement[bool] = n.c.mail_id.in_(fresh)
    if since is not None:
        made = sa.and_(made, n.c.created_at >= since)
    summary.notifications = conn.execute(
        sa.select(sa.func.count()).select_from(n).where(made)
    ).scalar_one()
    summary.totals = store_totals(conn)
    return summary


def _count_earlier_as_duplicate(outcome: dict[str, Any], since: datetime) -> None:
    at = as_utc(outcome["at"])
    if at is not None and at < since:
        was = outcome["outcome"].replace("_", " ")
        request = f", request #{outcome['request_id']}" if outcome["request_id"] else ""
        outcome.update(
            outcome="duplicate",
            earlier=True,
            detail=f"handled before this run ({was}{request}); nothing new was made",
        )


def _public(outcome: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in outcome.items() if k not in ("at", "earlier")}


def store_totals(conn: sa.Connection) -> dict[str, int]:
    """What the store holds now, whatever run made it."""

    def count(table: sa.Table, *where: Any) -> int:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )

    n = tables.notifications
    return {
        "requests": count(tables.requests),
        "dead_letters": count(tables.dead_letters),
        "outbox_unsent": count(n, n.c.channel == "email", n.c.sent_at.is_(None)),
    }


def _outcomes(conn: sa.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    o, f = tables.mail_outcomes, tables.fetched_mails
    rows = conn.execute(
        sa.select(o, f.c.ref)
        .join(f, f.c.mail_id == o.c.mail_id, isouter=True)
        .where(o.c.mail_id.in_(ids))
    ).all()
    return {
        r.mail_id: {
            "outcome": r.outcome,
            "request_id": r.request_id,
            "detail": r.detail or "",
            "source": {"mailbox": r.mailbox, "ref": r.ref},
            "at": r.at,
        }
        for r in rows
    }


def _stripped(conn: sa.Connection, ids: list[str]) -> list[dict[str, Any]]:
    m = tables.request_mails
    rows = conn.execute(
        sa.select(m.c.request_id, m.c.data).where(m.c.mail_id.in_(ids)).order_by(m.c.request_id)
    ).all()
    return [{"request_id": r.request_id, **s} for r in rows for s in (r.data.get("stripped") or [])]


def list_requests(conn: sa.Connection, blobs: BlobStore) -> list[dict[str, Any]]:
    r, m = tables.requests, tables.request_mails
    mails: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(sa.select(m).order_by(m.c.created_at, m.c.mail_id)).all():
        mails.setdefault(row.request_id, []).append(_mail_view(row, blobs))
    return [
        {
            "id": row.id,
            "helpdesk": row.helpdesk_id,
            "subject": row.subject,
            "status": row.status,
            "requester": {"name": row.requester_name, "email": row.requester_email},
            "created_at": _iso(row.created_at),
            "mails": mails.get(row.id, []),
        }
        for row in conn.execute(sa.select(r).order_by(r.c.id)).all()
    ]


def _mail_view(row: Any, blobs: BlobStore) -> dict[str, Any]:
    data = row.data
    body_blob = data.get("body_text_blob")
    return {
        "mail_id": row.mail_id,
        "source": data["source"],
        "message_id": row.message_id,
        "from": data.get("from"),
        "to": data.get("to", []),
        "cc": data.get("cc", []),
        "subject": data.get("subject", ""),
        "date": data.get("date"),
        "auto_reply": data.get("auto_reply", False),
        "body_text": blobs.get(body_blob).decode("utf-8", "replace") if body_blob else "",
        "attachments": [
            {k: a[k] for k in ("filename", "size", "content_type", "sha256", "inline")}
            for a in data.get("attachments", [])
        ],
        "stripped": [
            {k: s[k] for k in ("filename", "reason", "message")} for s in data.get("stripped", [])
        ],
        "defects": data.get("defects", []),
        # "mail", or "bounce" for a delivery report kept on the request as a note
        "kind": data.get("kind", "mail"),
        "note": data.get("note"),
        "delivery_report": data.get("delivery_report"),
    }


def list_rejected(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every mail that opened no request and joined none, with the reason."""
    o, f, b = tables.mail_outcomes, tables.fetched_mails, tables.blobs
    head = sa.func.substr(b.c.data, 1, _HEAD_BYTES, type_=sa.LargeBinary).label("head")
    query = (
        sa.select(o, f.c.ref, head)
        .join(f, f.c.mail_id == o.c.mail_id, isouter=True)
        .join(b, b.c.sha256 == f.c.raw_sha256, isouter=True)
        .where(o.c.outcome == "rejected")
        .order_by(o.c.at, o.c.mail_id)
    )
    return [
        {
            "mail_id": row.mail_id,
            "helpdesk": row.helpdesk_id,
            "mailbox": row.mailbox,
            "ref": row.ref,
            **header_summary(bytes(row.head or b"")),
            "reason": row.detail or "",
            "at": _iso(row.at),
        }
        for row in conn.execute(query).all()
    ]


def list_dead_letters(conn: sa.Connection) -> list[dict[str, Any]]:
    d = tables.dead_letters
    return [
        {
            "id": row.id,
            "mail_id": row.mail_id,
            "helpdesk": row.helpdesk_id,
            "source": {"mailbox": row.mailbox, "ref": row.ref},
            "stage": row.stage,
            "queue": row.queue,
            "error_class": row.error_class,
            "error": row.error,
            "attempts": row.attempts,
            "at": _iso(row.at),
            "moved_to_error_folder_at": _iso(row.moved_to_error_folder_at),
            "move_error": row.move_error,
        }
        for row in conn.execute(sa.select(d).order_by(d.c.id)).all()
    ]


def list_notifications(conn: sa.Connection) -> list[dict[str, Any]]:
    n = tables.notifications
    return [
        {
            "id": row.id,
            "kind": row.topic,
            "channel": row.channel,
            "to": row.recipients,
            "subject": row.subject,
            "mail_id": row.mail_id,
            "created_at": _iso(row.created_at),
            "sent_at": _iso(row.sent_at),
            "error": row.error,
            "attempts": row.attempts,
            "next_attempt_at": _iso(row.next_attempt_at),
            "suppressed_reason": row.suppressed_reason,
            "message_id": row.message_id,
        }
        for row in conn.execute(sa.select(n).order_by(n.c.id)).all()
    ]


def mailbox_counts(conn: sa.Connection) -> dict[str, Counter[str]]:
    """Per mailbox: how many mails ended in each outcome, plus how many are in the error folder."""
    o = tables.mail_outcomes
    counts: dict[str, Counter[str]] = {}
    rows = conn.execute(
        sa.select(o.c.mailbox, o.c.outcome, sa.func.count()).group_by(o.c.mailbox, o.c.outcome)
    )
    for mailbox, outcome, n in rows:
        counts.setdefault(mailbox, Counter())[outcome] = n
    return counts


def monitoring_figures(conn: sa.Connection) -> StoreFigures:
    """What ``/metrics`` reads from the store at each scrape: a few small queries, none of
    them over the mail tables."""
    m, n, d = tables.mailboxes, tables.notifications, tables.dead_letters
    mailboxes = [
        MailboxFigures(
            helpdesk=row.helpdesk_id,
            mailbox=row.name,
            last_success=as_utc(row.last_success_at),
            consecutive_failures=row.consecutive_failures,
            error_folder_mails=row.error_count,
            fetching=row.enabled,
            stopped_by_errors=row.paused_by_errors,
        )
        for row in conn.execute(sa.select(m).order_by(m.c.name))
    ]
    # An unsent email is given up once it failed with no next attempt (render._delivery);
    # suppressed ones (over the rate limit) are neither pending nor given up.
    unsent = (n.c.channel == "email", n.c.sent_at.is_(None), n.c.suppressed_reason.is_(None))
    given_up = sa.and_(n.c.error.is_not(None), n.c.next_attempt_at.is_(None))
    outbox = conn.execute(
        sa.select(
            sa.func.count().filter(sa.not_(given_up)), sa.func.count().filter(given_up)
        ).where(*unsent)
    ).one()
    entries = conn.execute(sa.select(sa.func.count()).select_from(d)).scalar_one()
    return StoreFigures(mailboxes, int(outbox[0]), int(outbox[1]), int(entries))
