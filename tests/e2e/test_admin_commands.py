"""What an admin does about failed mail, on the embedded default and on RabbitMQ + PostgreSQL."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from harness import DEMO, Mailroom
from test_demo_mailbox import process_demo

BROKEN = "demo-11-broken-mime"
REPAIRED = (
    b"From: Lobby Scanner <scanner@litware.example>\r\nTo: support@demo.example\r\n"
    b"Subject: Scanned document from LOBBY-MFP\r\nMessage-ID: <demo-11-fixed@litware.example>\r\n"
    b"\r\nThe scan is attached again, this time readable.\r\n"
)


def error_folder_file(room: Mailroom) -> Path:
    [path] = (room.maildir / ".Errors" / "cur").iterdir()
    return path


def settle(room: Mailroom, done) -> None:  # type: ignore[no-untyped-def]
    """Let the pipeline finish: a run on the embedded default, the workers at scale."""
    if room.embedded:
        room.json("run", "--once")
    room.wait_for(done, what="the pipeline to settle")


def test_errors_list_counts_per_mailbox(mailroom: Mailroom) -> None:
    process_demo(mailroom)

    [row] = mailroom.json("errors", "list")

    assert (row["mailbox"], row["error_folder"], row["error_count"]) == ("demo", "Errors", 1)
    assert row["dead_letters"] == 1 and row["stopped"] is False


def test_the_download_holds_the_decrypted_log_and_the_raw_mail(mailroom: Mailroom) -> None:
    process_demo(mailroom)
    out = mailroom.workdir / "errors.zip"

    said = mailroom.cli("errors", "download", "--out", str(out)).stdout

    assert "wrote 1 error logs" in said
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
        log = archive.read(names[1]).decode()
        raw = archive.read(names[0])
    assert [n.rsplit(".", 1)[1] for n in names] == ["eml", "txt"]
    assert "StartBoundaryNotFoundDefect" in log and "Subject: Scanned document" in log
    assert "Traceback" in log
    assert raw == (DEMO / "Maildir" / "new" / BROKEN).read_bytes()


def test_a_wrong_key_refuses_the_download_and_writes_nothing(mailroom: Mailroom) -> None:
    process_demo(mailroom)
    mailroom.stop_workers()
    mailroom.env["MAILROOM_SECRET_KEY"] = Fernet.generate_key().decode()
    out = mailroom.workdir / "errors.zip"

    done = mailroom.cli("errors", "download", "--out", str(out), check=False)

    assert done.returncode == 2 and "cannot decrypt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_moving_repaired_mail_back_to_the_inbox_clears_the_queue(mailroom: Mailroom) -> None:
    process_demo(mailroom)
    error_folder_file(mailroom).write_bytes(REPAIRED)  # fixed by hand in a mail client

    said = mailroom.cli("errors", "move-to-inbox", "demo").stdout
    settle(mailroom, lambda: len(mailroom.json("requests", "list")) == 9)

    assert "moved 1 mails back to the inbox; fetching resumed" in said
    assert mailroom.json("dlq", "list") == []
    assert mailroom.json("errors", "list")[0]["error_count"] == 0
    assert not any((mailroom.maildir / ".Errors" / "cur").iterdir())


def test_a_replayed_mail_that_fails_again_comes_back_to_the_queue(mailroom: Mailroom) -> None:
    process_demo(mailroom)
    [entry] = mailroom.json("dlq", "list")
    shown = mailroom.json("dlq", "show", str(entry["id"]))

    mailroom.cli("dlq", "replay", str(entry["id"]))
    settle(
        mailroom, lambda: [d["at"] for d in mailroom.json("dlq", "list")] not in ([], [entry["at"]])
    )

    assert shown["source"]["ref"] == BROKEN
    [again] = mailroom.json("dlq", "list")
    assert again["at"] > entry["at"] and again["source"]["ref"] == BROKEN
    assert len(mailroom.json("requests", "list")) == 8, "nothing else was touched"


def test_purge_forgets_the_entries_but_keeps_the_mail(mailroom: Mailroom) -> None:
    process_demo(mailroom)

    said = mailroom.cli("dlq", "purge", "--yes").stdout

    assert "purged 1 dead-letter entries" in said
    assert mailroom.json("dlq", "list") == []
    assert error_folder_file(mailroom).name.startswith(BROKEN)


def test_a_pop_mailbox_has_no_error_folder_to_move_back_from(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: pop\n"
        "        protocol: pops\n        host: mail.example.test\n        username: u\n"
        "        password: p\n"
    )

    done = room.cli("errors", "move-to-inbox", "pop", check=False)

    assert done.returncode == 2
    assert "is POPS, which has no error folder" in done.stderr and "dlq replay --all" in done.stderr


def test_an_entry_whose_mailbox_is_gone_does_not_block_the_others(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    process_demo(room)
    (room.workdir / "other").mkdir()
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: elsewhere\n"
        f"        protocol: maildir\n        path: {room.workdir / 'other'}\n"
    )

    done = room.cli("dlq", "replay", "--all")

    assert "replayed 0 dead-letter entries" in done.stdout
    assert "not replayed: 1 entries of mailbox 'demo'" in done.stderr
    assert "no mailbox named 'demo'" in done.stderr
    assert len(room.json("dlq", "list")) == 1, "the entry is kept as it was"


def test_a_damaged_log_is_named_and_the_others_are_still_downloaded(mailroom: Mailroom) -> None:
    broken = (DEMO / "Maildir" / "new" / BROKEN).read_bytes()
    mailroom.use_demo_maildir()
    second = broken.replace(b"Message-ID: <", b"Message-ID: <again-", 1)
    (mailroom.maildir / "new" / "second-broken").write_bytes(second)
    mailroom.apply_settings()
    if not mailroom.embedded:
        mailroom.start_workers()
    settle(mailroom, lambda: len(mailroom.json("dlq", "list")) == 2)
    mailroom.stop_workers()
    first, _ = mailroom.json("dlq", "list")
    damage_log_of(mailroom, first["id"])
    out = mailroom.workdir / "errors.zip"

    done = mailroom.cli("errors", "download", "--out", str(out))

    assert "wrote 2 error logs" in done.stdout
    assert f"entry {first['id']}: its error log cannot be decrypted" in done.stderr
    with zipfile.ZipFile(out) as archive:
        logs = [archive.read(n).decode() for n in sorted(archive.namelist()) if n.endswith(".txt")]
        emls = [n for n in archive.namelist() if n.endswith(".eml")]
    assert "cannot be decrypted although others can" in logs[0]
    assert f"stage: {first['stage']}" in logs[0], "what the entry records is kept"
    assert "Traceback" in logs[1]
    assert len(emls) == 2, "both raw mails are there"


def damage_log_of(room: Mailroom, entry_id: int) -> None:
    """Flip bytes in the stored, encrypted log of one entry, as a failing disk would."""
    engine = sa.create_engine(room.env["MAILROOM_DATABASE_URL"])
    with engine.begin() as conn:
        blob = conn.execute(
            sa.text("SELECT log_blob FROM dead_letters WHERE id = :id"), {"id": entry_id}
        ).scalar_one()
        data = bytes(
            conn.execute(
                sa.text("SELECT data FROM blobs WHERE sha256 = :sha"), {"sha": blob}
            ).scalar_one()
        )
        damaged = data[:40] + bytes(b ^ 0x55 for b in data[40:80]) + data[80:]
        conn.execute(
            sa.text("UPDATE blobs SET data = :data WHERE sha256 = :sha"),
            {"data": damaged, "sha": blob},
        )
    engine.dispose()


SET_ASIDE = (
    b"From: Pat Doe <pat@customer.example>\r\nTo: support@demo.example\r\n"
    b"Subject: Printer offline again\r\nMessage-ID: <outage-1@customer.example>\r\n"
    b"\r\nThe printer on floor 2 is offline again.\r\n"
)


def test_mail_an_earlier_release_set_aside_in_an_outage_is_replayed_by_reason_and_not_doubled(
    mailroom: Mailroom,
) -> None:
    # Given the demo processed, and what an earlier release left after a broker outage: one
    # healthy mail only in the dead-letter queue (moved to Errors), and one mail both on its
    # request and in the queue
    process_demo(mailroom)
    (mailroom.maildir / ".Errors" / "cur" / "outage-1:2,S").write_bytes(SET_ASIDE)
    doubled = mailroom.json("requests", "list")[0]["mails"][0]
    engine = sa.create_engine(mailroom.env["MAILROOM_DATABASE_URL"])
    with engine.begin() as conn:
        left_behind(conn, "outage-mail-1", "outage-1", outcome=True)
        left_behind(conn, doubled["mail_id"], doubled["source"]["ref"], outcome=False)
    engine.dispose()
    requests_before = len(mailroom.json("requests", "list"))

    # When the admin replays what the outage set aside
    said = mailroom.cli("dlq", "replay", "--all", "--reason", "deliverylimitexceeded")
    settle(mailroom, lambda: len(mailroom.json("requests", "list")) == requests_before + 1)

    # Then the set-aside mail is a request, the other is not doubled, the rest is untouched
    assert "replayed 1 dead-letter entries" in said.stdout
    assert "1 entries whose mail already has an outcome" in said.stderr
    mails = [m for r in mailroom.json("requests", "list") for m in r["mails"]]
    assert [m["message_id"] for m in mails].count("<outage-1@customer.example>") == 1
    assert [m["mail_id"] for m in mails].count(doubled["mail_id"]) == 1
    assert len({m["message_id"] for m in mails}) == len(mails)
    assert [d["error_class"] for d in mailroom.json("dlq", "list")] != []
    assert "DeliveryLimitExceeded" not in [d["error_class"] for d in mailroom.json("dlq", "list")]


def left_behind(conn: sa.Connection, mail_id: str, ref: str, *, outcome: bool) -> None:
    """A DeliveryLimitExceeded entry as an earlier release recorded it (mail moved to Errors);
    ``outcome``: it also took the mail's outcome (else the mail kept its request's)."""
    at = datetime.now(UTC)
    conn.execute(
        sa.text(
            "INSERT INTO dead_letters (mail_id, helpdesk_id, mailbox, ref, stage, error_class,"
            " error, attempts, at, moved_to_error_folder_at, queue) VALUES (:m, 'default',"
            " 'demo', :r, 'parser', 'DeliveryLimitExceeded', 'the parser worker stopped 5 or"
            " more times while handling this mail', 6, :at, :at, 'mail.fetched')"
        ),
        {"m": mail_id, "r": ref, "at": at},
    )
    if outcome:
        conn.execute(
            sa.text(
                "INSERT INTO mail_outcomes (mail_id, helpdesk_id, mailbox, outcome, detail, at)"
                " VALUES (:m, 'default', 'demo', 'dead_lettered', 'parser', :at)"
            ),
            {"m": mail_id, "at": at},
        )


def test_replaying_by_a_reason_no_entry_has_says_which_there_are(mailroom: Mailroom) -> None:
    process_demo(mailroom)

    done = mailroom.cli("dlq", "replay", "--all", "--reason", "NoSuchThing", check=False)

    assert done.returncode == 2
    assert "no dead-letter entry has the error class 'NoSuchThing'" in done.stderr
    [entry] = mailroom.json("dlq", "list")
    assert entry["error_class"] in done.stderr
