"""The demo Maildir through the whole pipeline: the README's promise, on both deployments."""

from __future__ import annotations

from typing import Any

from harness import Mailroom, settings_yaml

EXPECTED = {
    "fetched": 12,
    "requests_created": 8,
    "conversations_added": 3,
    "duplicates": 0,
    "rejected": 0,
    "attachments_stripped": 4,
    "dead_lettered": 1,
}


def process_demo(room: Mailroom) -> dict[str, Any] | None:
    """Run the demo mailbox once; on RabbitMQ every stage is its own ``mailroom worker``."""
    room.use_demo_maildir()
    room.apply_settings()
    if room.embedded:
        return room.json("run", "--once")
    room.start_workers()
    room.wait_for(lambda: len(room.accounted_mail_ids()) >= 12, what="12 demo mails")
    room.wait_for(lambda: _moved_to_error_folder(room), what="the error-folder move")
    return None


def _moved_to_error_folder(room: Mailroom) -> bool:
    return all(d["moved_to_error_folder_at"] for d in room.json("dlq", "list"))


def by_subject(requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in requests}


def test_demo_mails_become_requests_conversations_and_one_dead_letter(mailroom: Mailroom) -> None:
    summary = process_demo(mailroom)

    if summary is not None:
        assert {k: summary[k] for k in EXPECTED} == EXPECTED
        assert summary["notifications"] == 14
    requests = mailroom.json("requests", "list")
    assert len(requests) == 8
    mails = [m for r in requests for m in r["mails"]]
    assert len(mails) == 11
    assert len({m["mail_id"] for m in mails}) == 11
    subjects = by_subject(requests)
    printer = subjects["Printer on the 3rd floor keeps jamming"]
    assert printer["requester"] == {"name": "Heather Lee", "email": "heather@zylker.example"}
    assert [m["source"]["ref"] for m in printer["mails"]] == ["demo-01-plain-text", "demo-04-reply"]
    vpn = subjects["VPN disconnects every few minutes"]
    assert [m["subject"] for m in vpn["mails"]][1].startswith("Re: [Request ##2##]")
    invoice = subjects["Question about invoice 2026-118"]
    assert invoice["mails"][0]["attachments"][0]["filename"] == "invoice-2026-118.pdf"
    assert invoice["mails"][0]["attachments"][0]["content_type"] == "application/pdf"
    assert invoice["mails"][1]["source"]["ref"] == "demo-10-auto-reply"
    assert "Réservation salle de réunion - problème d'accès" in subjects
    assert "<ul>" not in subjects["VPN disconnects every few minutes"]["mails"][0]["body_text"]


def test_bad_attachments_are_stripped_with_reasons_and_people_told(mailroom: Mailroom) -> None:
    process_demo(mailroom)

    mails = [m for r in mailroom.json("requests", "list") for m in r["mails"]]
    stripped = {s["filename"]: s["reason"] for m in mails for s in m["stripped"]}
    assert stripped == {
        "setup.exe": "restricted_extension",
        "notes.txt": "empty",
        "photo.txt": "content_mismatch",
        "server.log": "too_large",
    }
    kept = {a["filename"] for m in mails for a in m["attachments"]}
    assert kept.isdisjoint(stripped)
    notes = mailroom.json("notifications", "list")
    to_senders = [
        n
        for n in notes
        if n["kind"] == "attachment_stripped"
        and n["channel"] == "email"
        and n["to"] != ["reps@demo.example"]
    ]
    assert sorted(n["to"][0] for n in to_senders) == [
        "aiko.tanaka@adatum.example",
        "lucas.martin@tailspin.example",
        "sofia.rossi@wingtip.example",
        "tom.becker@fabrikam.example",
    ]
    assert all(n["sent_at"] is None for n in to_senders), "no SMTP configured: kept in the outbox"
    bells = [n for n in notes if n["channel"] == "bell"]
    assert bells and all(n["sent_at"] for n in bells)


def test_broken_mail_is_dead_lettered_and_moved_to_the_error_folder(mailroom: Mailroom) -> None:
    process_demo(mailroom)

    dead = mailroom.json("dlq", "list")
    assert [(d["source"]["ref"], d["stage"]) for d in dead] == [("demo-11-broken-mime", "parser")]
    assert "StartBoundaryNotFoundDefect" in dead[0]["error"]
    error_folder = mailroom.maildir / ".Errors" / "cur"
    assert [p.name.split(":2,")[0] for p in error_folder.iterdir()] == ["demo-11-broken-mime"]
    inbox = [
        p.name
        for sub in ("new", "cur")
        for p in (mailroom.maildir / sub).iterdir()
        if not p.name.startswith(".")
    ]
    assert len(inbox) == 11 and all(name.endswith(":2,S") for name in inbox)
    notes = mailroom.json("notifications", "list")
    assert {n["channel"] for n in notes if n["kind"] == "mail_error"} == {"bell", "email"}


def test_a_second_run_creates_nothing_new(mailroom: Mailroom) -> None:
    process_demo(mailroom)
    before = mailroom.json("requests", "list")

    if mailroom.embedded:
        again = mailroom.json("run", "--once")
        assert again["fetched"] == 0 and again["requests_created"] == 0
    else:
        first_poll = mailroom.json("mailbox", "list")[0]["last_polled_at"]
        mailroom.stop_workers()
        mailroom.start_workers()
        mailroom.wait_for(lambda: _polled_after(mailroom, first_poll), what="a second poll")

    assert mailroom.json("requests", "list") == before
    assert len(mailroom.json("dlq", "list")) == 1


def _polled_after(room: Mailroom, earlier: str) -> bool:
    box = room.json("mailbox", "list")[0]
    return box["last_polled_at"] > earlier and box["last_error"] is None


def test_with_an_outgoing_server_notification_mails_are_sent(
    mailroom: Mailroom, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    collector, port = smtp_server
    mailroom.use_demo_maildir()
    outgoing = f"    outgoing: {{host: 127.0.0.1, port: {port}, security: none}}\n    mailboxes:"
    mailroom.apply_settings(settings_yaml(mailroom.maildir).replace("    mailboxes:", outgoing, 1))
    if mailroom.embedded:
        mailroom.cli("run", "--once")
    else:
        mailroom.start_workers()
        mailroom.wait_for(lambda: len(collector.envelopes) >= 9, what="9 notification mails")

    emails = [n for n in mailroom.json("notifications", "list") if n["channel"] == "email"]
    assert len(emails) == 9 and all(n["sent_at"] for n in emails)
    received = collector.mails()
    assert sorted(m["To"] for m in received).count("reps@demo.example") == 5
    to_tom = [m for m in received if m["To"] == "tom.becker@fabrikam.example"]
    assert to_tom[0]["Subject"] == "Re: Installer for the new label printer driver"
    assert to_tom[0]["In-Reply-To"] == "<demo-06@fabrikam.example>"
    assert "setup.exe" in to_tom[0].get_content()
