"""``mailroom inspect``: an admin asks why a mail was stripped, rejected or threaded there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness import DEMO, Mailroom, settings_yaml
from test_demo_mailbox import process_demo

from services.runtime import tables

NEW = DEMO / "Maildir" / "new"


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    """The embedded default with the demo settings applied and nothing fetched yet."""
    r = Mailroom.on_sqlite(tmp_path)
    r.use_demo_maildir()
    r.apply_settings()
    yield r
    r.stop_workers()


def store_contents(room: Mailroom) -> dict[str, list[Any]]:
    """Every row of every table, sorted: what "nothing stored" is checked against."""
    engine = sa.create_engine(room.env["MAILROOM_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted(map(repr, conn.execute(sa.select(t)).all()))
                for t in tables.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def inspect(room: Mailroom, *files: Path | str, check: bool = True) -> list[dict[str, Any]]:
    done = room.cli("inspect", *map(str, files), "--json", check=check)
    return json.loads(done.stdout)


def write_mail(room: Mailroom, name: str, text: str) -> Path:
    path = room.workdir / name
    path.write_bytes(text.replace("\n", "\r\n").encode())
    return path


def test_a_new_mail_would_open_a_request_and_nothing_is_stored(room: Mailroom) -> None:
    before = store_contents(room)

    [r] = inspect(room, NEW / "demo-01-plain-text")

    assert (r["outcome"], r["rule"], r["request_id"]) == ("request_created", "new_request", None)
    assert (r["helpdesk"], r["mailbox"]) == ("default", "demo")
    assert r["headers"]["subject"] == "Printer on the 3rd floor keeps jamming"
    assert r["headers"]["message_id"] == "<demo-01@zylker.example>"
    assert r["requester"] == {"name": "Heather Lee", "email": "heather@zylker.example"}
    assert r["recipients_kept"] == {"to": [], "cc": []}  # support@demo.example is the desk
    assert "jams on almost every print job" in r["body_text"]
    assert store_contents(room) == before
    assert room.json("requests", "list") == []


def test_a_tagged_reply_joins_the_request_a_real_run_made(room: Mailroom) -> None:
    room.json("run", "--once")
    reply = write_mail(
        room,
        "tagged.eml",
        "From: Marcus Okafor <marcus.okafor@northwind.example>\nTo: support@demo.example\n"
        "Subject: RE: [Request ##2##] VPN disconnects every few minutes\n"
        "Message-ID: <tagged-followup@northwind.example>\n\nStill dropping.\n",
    )
    before = store_contents(room)

    [r] = inspect(room, reply)

    [vpn] = [q for q in room.json("requests", "list") if q["id"] == 2]
    assert vpn["subject"] == "VPN disconnects every few minutes"
    assert (r["outcome"], r["rule"], r["request_id"]) == ("conversation_added", "subject_tag", 2)
    assert "subject carries the request's tag" in r["explanation"]
    assert store_contents(room) == before


def test_a_mail_already_routed_is_a_duplicate_and_a_reply_threads_by_in_reply_to(
    room: Mailroom,
) -> None:
    room.json("run", "--once")

    first, reply = inspect(room, NEW / "demo-01-plain-text", NEW / "demo-04-reply")

    assert (first["outcome"], first["rule"]) == ("duplicate", "seen_already")
    assert "<demo-01@zylker.example> already seen" in first["detail"]
    assert (reply["outcome"], reply["rule"]) == ("duplicate", "seen_already")
    fresh = write_mail(
        room,
        "reply.eml",
        "From: heather@zylker.example\nTo: support@demo.example\nSubject: Re: printer\n"
        "Message-ID: <another@zylker.example>\nIn-Reply-To: demo-01@zylker.example\n\nok\n",
    )
    [r] = inspect(room, fresh)
    assert (r["outcome"], r["rule"], r["request_id"]) == ("conversation_added", "thread_headers", 1)


def test_an_exe_attachment_shows_it_would_be_stripped_and_who_is_told(room: Mailroom) -> None:
    [r] = inspect(room, NEW / "demo-06-exe")

    [exe] = r["attachments"]
    assert (exe["filename"], exe["verdict"], exe["reason"]) == (
        "setup.exe",
        "stripped",
        "restricted_extension",
    )
    assert "setup.exe" in exe["message"]
    assert r["outcome"] == "request_created"
    told = {(n["channel"], tuple(n["to"])) for n in r["notifications"]}
    assert ("email", ("tom.becker@fabrikam.example",)) in told
    assert ("bell", ("reps@demo.example",)) in told
    human = room.cli("inspect", str(NEW / "demo-06-exe")).stdout
    assert "setup.exe" in human and "STRIPPED restricted_extension" in human


def test_a_sender_off_the_allowlist_is_shown_rejected_with_the_rule(room: Mailroom) -> None:
    text = settings_yaml(room.maildir).replace(
        "new_requests: {enabled: true, allow: []}",
        'new_requests: {enabled: false, allow: ["*@zylker.example"]}',
    )
    room.apply_settings(text)

    allowed, stranger = inspect(room, NEW / "demo-01-plain-text", NEW / "demo-02-html-only")

    assert allowed["outcome"] == "request_created"
    assert (stranger["outcome"], stranger["rule"]) == ("rejected", "allowlist")
    assert "marcus.okafor@northwind.example is not on the allowlist" in stranger["detail"]
    human = room.cli("inspect", str(NEW / "demo-02-html-only")).stdout
    assert "rule: allowlist" in human and "not on the allowlist" in human


def test_the_human_output_escapes_control_characters(room: Mailroom) -> None:
    hostile = write_mail(
        room,
        "hostile.eml",
        "From: x@example.org\nSubject: \x1b[2Jwiped \u202etxt.exe\n\nbody \x1b]0;title\x07\n",
    )

    out = room.cli("inspect", str(hostile)).stdout

    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[2Jwiped \\u202etxt.exe" in out


def test_a_file_the_parser_refuses_is_shown_as_dead_lettered_with_status_1(room: Mailroom) -> None:
    not_mail = room.workdir / "photo.png"
    not_mail.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))

    done = room.cli("inspect", str(not_mail), str(NEW / "demo-01-plain-text"), check=False)

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "photo.png" in done.stderr and "dead-letter" in done.stderr
    assert "no header" in done.stdout and "new_request" in done.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["nosuch.eml"], "cannot read nosuch.eml: No such file or directory"),
        (["."], ".: not a file"),
        ([str(NEW / "demo-01-plain-text"), "--helpdesk", "sales"], "no help desk 'sales'"),
        ([str(NEW / "demo-01-plain-text"), "--mailbox", "nope"], "no mailbox named 'nope'"),
    ],
)
def test_bad_arguments_are_one_clear_line_with_status_2(room: Mailroom, args, said) -> None:
    before = store_contents(room)

    done = room.cli("inspect", *args, check=False)

    assert done.returncode == 2 and said in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert store_contents(room) == before


def test_several_help_desks_need_the_flag(room: Mailroom) -> None:
    second = (
        settings_yaml(room.maildir)
        + "  - id: sales\n    mailboxes:\n      - name: sales\n        protocol: maildir\n"
        f"        path: {room.workdir / 'sales'}\n        addresses: [sales@demo.example]\n"
    )
    room.apply_settings(second)

    done = room.cli("inspect", str(NEW / "demo-01-plain-text"), check=False)
    [r] = inspect(room, NEW / "demo-01-plain-text", "--helpdesk", "sales")

    assert done.returncode == 2 and "choose one with --helpdesk (default, sales)" in done.stderr
    assert (r["helpdesk"], r["mailbox"], r["outcome"]) == ("sales", "sales", "request_created")
    assert r["recipients_kept"]["to"] == [{"name": "", "email": "support@demo.example"}]


def test_inspect_reads_the_store_of_either_deployment_without_changing_it(
    mailroom: Mailroom,
) -> None:
    process_demo(mailroom)
    mailroom.stop_workers()
    before = store_contents(mailroom)

    results = inspect(mailroom, *sorted(NEW.iterdir()), check=False)

    by_file = {r["file"]: (r["outcome"], r["rule"]) for r in results}
    assert by_file["demo-05-tag-reply"] == ("duplicate", "seen_already")
    assert by_file["demo-11-broken-mime"] == ("dead_lettered", "parser")
    assert store_contents(mailroom) == before
