"""``mailroom inspect FILE...``: a dry run of the pipeline on raw mails; nothing is stored."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from services import safe_text
from services.cli.app import main
from services.cli.common import Fail, emit, explained, load_settings, open_store
from services.inspection import Desk, as_json, inspect_mail
from services.parser.worker import parser_limits
from services.runtime import tables
from services.runtime.cached_settings import CachedSettings, ConfiguredMailbox
from services.runtime.store import Store
from services.validator.adapters import LibmagicSniffer

_MB = 1024 * 1024
#: Shown of a body in the human output; ``--json`` has all of it.
_BODY_CHARS = 2000


class NotAMail(Fail):
    """Some file is no mail the pipeline could read: it would be dead-lettered."""

    exit_code = 1

    def __init__(self, message: str, *, json_written: bool) -> None:
        super().__init__(message)
        self.json_written = json_written


@main.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--helpdesk", "helpdesk_id", metavar="ID", help="The help desk to route for.")
@click.option("--mailbox", metavar="NAME", help="The mailbox the mail arrived in.")
@click.option("--json", "as_json_output", is_flag=True)
def inspect_command(
    files: tuple[Path, ...], helpdesk_id: str | None, mailbox: str | None, as_json_output: bool
) -> None:
    """What Mailroom would make of raw mails (.eml), storing nothing: the parsed headers,
    body, attachments with their verdicts, defects, and the routing decision with its rule."""
    with explained():
        settings = load_settings()
        store = open_store(settings)
        desk = _desk(store, helpdesk_id, mailbox)
        raws = [(path, _read(path, desk)) for path in files]
        limits, sniff = parser_limits(settings), LibmagicSniffer()
        results = [
            as_json(
                inspect_mail(
                    raw, name=path.name, desk=desk, store=store, limits=limits, sniff=sniff
                )
            )
            for path, raw in raws
        ]
    emit(results) if as_json_output else click.echo("\n".join(map(render_inspection, results)))
    refused = [r["file"] for r in results if r["outcome"] == "dead_lettered"]
    if refused:
        raise NotAMail(
            f"the parser refuses {', '.join(map(shown, refused))}: the pipeline would put it "
            "into the dead-letter queue (the reason is shown above)",
            json_written=as_json_output,
        )


def _desk(store: Store, helpdesk_id: str | None, mailbox: str | None) -> Desk:
    # Without secrets: a dry run logs in nowhere.
    current = CachedSettings(store).current()
    boxes = list(current.mailboxes())
    if mailbox is not None:
        box = _mailbox(boxes, mailbox)
        if helpdesk_id is not None and helpdesk_id != box.helpdesk:
            raise Fail(
                f"mailbox {mailbox!r} belongs to help desk {box.helpdesk!r}, not {helpdesk_id!r}"
            )
        helpdesk_id = box.helpdesk
    ids = _helpdesk_ids(store)
    if helpdesk_id is None:
        helpdesk_id = _only(ids)
    elif helpdesk_id not in ids:
        known = ", ".join(ids) or "none"
        raise Fail(f"no help desk {helpdesk_id!r} (configured: {known})")
    return Desk(current.helpdesk(helpdesk_id), boxes, mailbox)


def _mailbox(boxes: list[ConfiguredMailbox], name: str) -> ConfiguredMailbox:
    for box in boxes:
        if box.settings.name == name:
            return box
    known = ", ".join(b.settings.name for b in boxes) or "none"
    raise Fail(f"no mailbox named {name!r} (configured: {known})")


def _helpdesk_ids(store: Store) -> list[str]:
    with store.read_only() as conn:
        return list(conn.execute(sa.select(tables.helpdesks.c.id).order_by("id")).scalars())


def _only(ids: list[str]) -> str:
    if not ids:
        raise Fail("no help desk is configured: run `mailroom config apply FILE` first")
    if len(ids) > 1:
        raise Fail(
            f"several help desks are configured; choose one with --helpdesk ({', '.join(ids)})"
        )
    return ids[0]


def _read(path: Path, desk: Desk) -> bytes:
    """The file's bytes; a clear ``Fail`` for what is no readable file or too big a mail."""
    name = shown(path)  # one line, even for a name with a line break in it
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise Fail(f"{name}: not a file; give the path of a raw mail (.eml)")
        limit = max((b.settings.max_mail_mb for b in desk.own_boxes), default=50)
        if info.st_size > limit * _MB:
            raise Fail(
                f"{name}: {info.st_size / _MB:.1f} MB, over the help desk's max_mail_mb "
                f"({limit:g} MB): the poller would not fetch it"
            )
        return path.read_bytes()
    except OSError as exc:
        raise Fail(f"cannot read {name}: {exc.strerror or exc}") from None


def shown(value: Any) -> str:
    """``value`` as one line safe for a terminal: control and bidi characters escaped."""
    return safe_text.shown("" if value is None else str(value))


def render_inspection(r: dict[str, Any]) -> str:
    """One inspected mail for people; every text from the mail is escaped."""
    lines = [
        f"== {shown(r['file'])} (help desk {shown(r['helpdesk'])}, mailbox {shown(r['mailbox'])})"
    ]
    if "headers" not in r:
        lines.append(f"outcome: dead-lettered ({shown(r['detail'])})")
        return "\n".join(lines)
    h = r["headers"]
    lines += [
        f"outcome: {shown(r['explanation'])}",
        f"rule: {shown(r['rule'])}",
        "",
        f"Message-ID: {shown(h['message_id'])}{_made(h)}",
        f"From: {_address(h['from'])}",
        f"Requester: {_address(r['requester'])}",
        f"To: {_addresses(h['to'])}",
        f"Cc: {_addresses(h['cc'])}",
        f"Kept recipients: {_addresses(_kept(r))}",
        f"Subject: {shown(h['subject'])}",
        f"Date: {shown(h['date'] or '-')}",
        f"In-Reply-To: {shown(' '.join(h['in_reply_to']) or '-')}",
        f"References: {shown(' '.join(h['references']) or '-')}",
        f"Automatic reply: {'yes' if h['auto_reply'] else 'no'}",
    ]
    lines += _attachments(r["attachments"])
    lines += [f"Defect: {shown(d)}" for d in r["defects"]]
    lines += [
        f"Would notify ({n['channel']}): {shown(', '.join(n['to']))}" for n in r["notifications"]
    ]
    lines += ["", "Body:", *_body(r["body_text"])]
    return "\n".join(lines)


def _made(headers: dict[str, Any]) -> str:
    return " (none in the mail: made from its bytes)" if headers["message_id_synthetic"] else ""


def _kept(r: dict[str, Any]) -> list[dict[str, str]]:
    kept: list[dict[str, str]] = r["recipients_kept"]["to"] + r["recipients_kept"]["cc"]
    return kept


def _addresses(rows: list[dict[str, str]]) -> str:
    return ", ".join(map(_address, rows)) or "-"


def _address(a: dict[str, str] | None) -> str:
    if not a:
        return "-"
    return shown(f"{a['name']} <{a['email']}>" if a.get("name") else a["email"])


def _attachments(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for a in rows:
        what = f"{shown(a['filename'])} ({shown(a['content_type'])}, {a['size']} bytes)"
        verdict = (
            "kept" if a["verdict"] == "kept" else f"STRIPPED {a['reason']}: {shown(a['message'])}"
        )
        out.append(f"Attachment: {what}: {verdict}")
    return out or ["Attachments: none"]


def _body(text: str | None) -> list[str]:
    if text is None:
        return ["(no text body)"]
    more = len(text) - _BODY_CHARS
    cut = safe_text.shown(text[:_BODY_CHARS], keep_lines=True)
    return [cut, f"... ({more} more characters; --json shows all)"] if more > 0 else [cut]
