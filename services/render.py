"""Tables for people (rich); ``--json`` output bypasses this module.

Every cell is plain text (no rich markup, no emoji codes) with control and bidi characters
shown as escapes: subjects, names and file names are chosen by whoever sent the mail.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from contracts.settings import SECRET_FIELDS
from services.poller.sources import capabilities
from services.reports import RunSummary
from services.runtime.config_store import MailboxState
from services.safe_text import shown


def _console() -> Console:
    return Console(soft_wrap=False)


def _cell(value: object) -> Text:
    """A table cell: the value as plain text, unsafe characters escaped."""
    return Text(shown("" if value is None else str(value)))


def summary(s: RunSummary) -> None:
    console = _console()
    t = s.totals
    caption = (
        f"the store now holds {t.get('requests', 0)} requests, {t.get('dead_letters', 0)} "
        f"dead-letter entries and {t.get('outbox_unsent', 0)} unsent mails in the outbox"
    )
    counts = Table(title="mailroom run --once", show_header=True)
    counts.add_column("what")
    counts.add_column("count", justify="right")
    for key, value in s.counts().items():
        if key != "in_flight" or value:
            counts.add_row(_cell(key.replace("_", " ")), _cell(value))
    console.print(counts)
    console.print(caption)
    if s.stripped:
        table = Table(title="attachments stripped")
        for col in ("request", "file", "reason", "why"):
            table.add_column(col)
        for item in s.stripped:
            table.add_row(
                *map(
                    _cell,
                    (f"#{item['request_id']}", item["filename"], item["reason"], item["message"]),
                )
            )
        console.print(table)
    if s.mailbox_errors:
        table = Table(title="mailboxes not polled")
        table.add_column("mailbox")
        table.add_column("what to fix")
        for e in s.mailbox_errors:
            table.add_row(_cell(e["mailbox"]), _cell(e["error"]))
        console.print(table)
    if s.dead:
        table = Table(title="dead-lettered (see `mailroom dlq list`)")
        for col in ("mailbox", "mail", "stage", "error", "error folder"):
            table.add_column(col)
        for d in s.dead:
            moved = "moved" if d["moved_to_error_folder_at"] else (d["move_error"] or "not moved")
            row = (d["source"]["mailbox"], d["source"]["ref"], d["stage"], d["error"], moved)
            table.add_row(*map(_cell, row))
        console.print(table)


def mailbox_row(state: MailboxState, counts: Counter[str] | None) -> dict[str, Any]:
    counts = counts or Counter()
    return {
        "name": state.settings.name,
        "helpdesk": state.helpdesk,
        "protocol": state.settings.protocol,
        "enabled": state.enabled,
        "last_polled_at": state.last_polled_at.isoformat() if state.last_polled_at else None,
        "last_error": state.last_error,
        "consecutive_failures": state.consecutive_failures,
        "error_count": state.error_count,
        "paused_reason": state.paused_reason,
        "alerted_at": state.alerted_at.isoformat() if state.alerted_at else None,
        "outcomes": dict(counts),
    }


def mailbox_detail(
    state: MailboxState, counts: Counter[str] | None, oauth: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``oauth``: the tokens' health of an ``auth: oauth`` mailbox (never the tokens)."""
    data = mailbox_row(state, counts)
    settings = state.settings.model_dump(mode="json")
    data["settings"] = {
        k: ("********" if k in SECRET_FIELDS and v else v) for k, v in settings.items()
    }
    protocol = state.settings.protocol
    data["error_folder"] = (
        f"{state.settings.error_folder.name}"
        if capabilities(protocol).error_folder
        else f"none: {protocol.upper()} has no folders; failed mail is kept as dead-letter "
        "entries only"
    )
    if oauth is not None:
        data["oauth"] = oauth
    return data


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*map(_cell, row))
    _console().print(table)


def mailboxes(rows: list[dict[str, Any]]) -> None:
    columns = ("name", "helpdesk", "protocol", "enabled", "last polled", "failures", "last error")
    _print_table(
        "mailboxes",
        columns,
        [
            (
                r["name"],
                r["helpdesk"],
                r["protocol"],
                "yes" if r["enabled"] else "no",
                r["last_polled_at"] or "never",
                str(r["consecutive_failures"]),
                r["last_error"] or "",
            )
            for r in rows
        ],
    )


def detail(data: dict[str, Any]) -> None:
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(_cell(key), Text(_text(value)))
    _console().print(table)


def _text(value: Any) -> str:
    """A value as text, its parts escaped; a mapping takes one line per key."""
    if isinstance(value, dict):
        return "\n".join(f"{shown(str(k))}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return "" if value is None else shown(str(value))


def requests(rows: list[dict[str, Any]]) -> None:
    columns = ("#", "helpdesk", "subject", "requester", "mails", "attachments", "stripped")
    _print_table(
        "requests",
        columns,
        [
            (
                str(r["id"]),
                r["helpdesk"],
                r["subject"],
                r["requester"]["email"],
                str(len(r["mails"])),
                str(sum(len(m["attachments"]) for m in r["mails"])),
                str(sum(len(m["stripped"]) for m in r["mails"])),
            )
            for r in rows
        ],
    )


def rejected(rows: list[dict[str, Any]]) -> None:
    columns = ("mailbox", "mail", "from", "subject", "reason", "at")
    _print_table(
        "rejected mail",
        columns,
        [
            (
                r["mailbox"],
                r["mail_id"],
                (r["from"] or {}).get("email", ""),
                r["subject"],
                r["reason"],
                r["at"] or "",
            )
            for r in rows
        ],
    )


def dead_letters(rows: list[dict[str, Any]]) -> None:
    columns = ("id", "mailbox", "mail", "stage", "error", "attempts", "at")
    _print_table(
        "dead-letter queue",
        columns,
        [
            (
                str(d["id"]),
                d["source"]["mailbox"] or "?",
                d["source"]["ref"] or "?",
                d["stage"],
                d["error"],
                str(d["attempts"]),
                d["at"],
            )
            for d in rows
        ],
    )


def notifications(rows: list[dict[str, Any]]) -> None:
    columns = ("id", "kind", "channel", "to", "subject", "sent")
    _print_table(
        "notifications",
        columns,
        [
            (
                str(n["id"]),
                n["kind"],
                n["channel"],
                ", ".join(n["to"]),
                n["subject"],
                _delivery(n),
            )
            for n in rows
        ],
    )


def _delivery(n: dict[str, Any]) -> str:
    """Sent, waiting for a retry, given up, suppressed, or kept in the outbox."""
    if n["sent_at"]:
        return str(n["sent_at"])
    if n.get("suppressed_reason"):
        return f"not sent: {n['suppressed_reason']}"
    if n["error"] and n.get("next_attempt_at"):
        return f"attempt {n['attempts']} failed, next at {n['next_attempt_at']}: {n['error']}"
    if n["error"]:
        return f"failed: {n['error']}"
    return "in outbox"


def error_counts(rows: list[dict[str, Any]]) -> None:
    columns = ("mailbox", "protocol", "error folder", "in folder", "dead letters", "fetching")
    _print_table(
        "errors",
        columns,
        [
            (
                r["mailbox"],
                r["protocol"],
                r["error_folder"] or "none (POP)",
                str(r["error_count"]),
                str(r["dead_letters"]),
                f"stopped: {r['paused_reason']}" if r["stopped"] else "on",
            )
            for r in rows
        ],
    )
