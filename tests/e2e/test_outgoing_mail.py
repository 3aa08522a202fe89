"""Notification emails over a real SMTP server that is down for a while: kept, retried, sent
once. Embedded (``mailroom run``) and scaled (``mailroom worker notifier`` on RabbitMQ and
PostgreSQL) alike."""

from __future__ import annotations

from typing import Any

from harness import Mailroom
from outgoing_scenario import REPS, SENDER, emails, settings, write_mail_with_an_exe
from servers import free_port
from smtp_servers import SmtpServer


def start_pipeline(room: Mailroom) -> None:
    """``mailroom run`` on the embedded broker; one process per stage on RabbitMQ."""
    if not room.embedded:
        room.start_workers()
        return
    room.start_command("run", "run")


def notices(room: Mailroom) -> dict[str, dict[str, Any]]:
    return emails(room.json("notifications", "list"))


def retried_while_down(room: Mailroom) -> bool:
    kept = notices(room)
    return set(kept) == {SENDER, REPS} and all(
        n["attempts"] >= 2 and n["error"] and not n["sent_at"] for n in kept.values()
    )


def all_sent(room: Mailroom) -> bool:
    kept = notices(room)
    return len(kept) == 2 and all(n["sent_at"] for n in kept.values())


def test_notices_wait_while_the_smtp_server_is_down_and_arrive_once_when_it_is_back(
    mailroom: Mailroom,
) -> None:
    # Given a mail whose attachment will be stripped, and the help desk's SMTP server down
    smtp_port = free_port()
    write_mail_with_an_exe(mailroom.maildir)
    mailroom.apply(settings(mailroom.maildir, smtp_port))

    # When the pipeline runs, the notices fail and are retried, and none is lost
    start_pipeline(mailroom)
    mailroom.wait_for(lambda: retried_while_down(mailroom), what="retries while SMTP is down")
    while_down = notices(mailroom)
    assert all(f"127.0.0.1:{smtp_port}" in n["error"] for n in while_down.values())

    # When the server comes back on the same port
    server = SmtpServer(smtp_port)
    server.start()
    try:
        mailroom.wait_for(lambda: all_sent(mailroom), what="the notices to be sent")
        mailroom.stop_workers()
    finally:
        server.stop()

    # Then each notice arrived exactly once, with the Message-ID its entry shows
    received = server.collector.mails()
    sent = notices(mailroom)
    assert sorted(m["Message-ID"] for m in received) == sorted(
        n["message_id"] for n in sent.values()
    )
    by_id = {m["Message-ID"]: m for m in received}
    assert by_id[sent[SENDER]["message_id"]]["To"] == SENDER
    assert by_id[sent[REPS]["message_id"]]["To"] == REPS
    for who, entry in sent.items():
        assert entry["error"] is None
        assert entry["message_id"] == while_down[who]["message_id"]
        assert entry["attempts"] > while_down[who]["attempts"]
