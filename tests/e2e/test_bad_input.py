"""Bad input gets one clear line that says what to fix; never a traceback, never lost mail."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Mailroom, settings_yaml


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    return Mailroom.on_sqlite(tmp_path)


def refused(room: Mailroom, *args: str) -> str:
    done = room.cli(*args, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_a_settings_file_with_a_wrong_field_names_its_path_and_the_fix(room: Mailroom) -> None:
    bad = settings_yaml(room.maildir).replace("protocol: maildir", "protocl: maildir")
    (room.workdir / "bad.yaml").write_text(bad)

    err = refused(room, "config", "apply", "bad.yaml")

    assert (
        "helpdesks[0].mailboxes[0].protocl: unknown field; remove it or check its spelling" in err
    )
    assert "helpdesks[0].mailboxes[0].protocol: required field is missing" in err


def test_a_port_out_of_range_and_oauth_on_pop_are_refused(room: Mailroom) -> None:
    (room.workdir / "bad.yaml").write_text(
        "helpdesks:\n  - id: default\n    mailboxes:\n"
        "      - {name: a, protocol: imap, host: mail.example.com, port: 70000}\n"
        "      - {name: b, protocol: pop, host: mail.example.com, auth: oauth,"
        " client_id: x, token_url: https://idp.example.com/token}\n"
    )

    err = refused(room, "config", "apply", "bad.yaml")

    assert "helpdesks[0].mailboxes[0].port: Input should be less than or equal to 65535" in err
    assert "auth oauth is not available for protocol pop" in err


def test_a_missing_maildir_is_a_clear_error_and_the_run_reports_it(room: Mailroom) -> None:
    room.apply_settings(settings_yaml(room.workdir / "nowhere"))

    err = refused(room, "mailbox", "test", "demo")
    summary = room.json("run", "--once")

    assert (
        f"Maildir folder {room.workdir / 'nowhere'} does not exist; create it or fix `path`" in err
    )
    assert summary["fetched"] == 0
    assert "does not exist" in summary["mailbox_errors"][0]["error"]
    assert room.json("mailbox", "list")[0]["consecutive_failures"] == 1


def test_an_unreachable_broker_is_one_line_with_the_url_and_no_password(room: Mailroom) -> None:
    room.use_demo_maildir()
    room.apply_settings()
    room.env["MAILROOM_BROKER_URL"] = "amqp://guest:s3cret@127.0.0.1:1//"

    err = refused(room, "run", "--once")

    assert err.strip().count("\n") == 0
    assert "broker amqp://guest:***@127.0.0.1:1// is unreachable" in err
    assert "s3cret" not in err
    assert len(list((room.maildir / "new").iterdir())) == 12, "nothing was taken from the mailbox"


def test_an_unreachable_database_is_one_line_with_the_url_and_no_password(room: Mailroom) -> None:
    room.env["MAILROOM_DATABASE_URL"] = "postgresql+psycopg://mailroom:s3cret@127.0.0.1:1/mailroom"

    err = refused(room, "requests", "list")

    assert err.strip().count("\n") == 0
    assert "database postgresql+psycopg://mailroom:***@127.0.0.1:1/mailroom" in err
    assert "s3cret" not in err


def test_running_before_any_settings_says_to_apply_them(room: Mailroom) -> None:
    err = refused(room, "run", "--once")
    room.apply_settings("helpdesks:\n  - id: default\n")
    no_mailbox = refused(room, "run", "--once")

    assert f"no Mailroom data at {room.workdir / 'var' / 'mailroom.db'}" in err
    assert "run `mailroom config apply SETTINGS` first or set MAILROOM_VAR_DIR" in err
    assert "no mailbox is configured: run `mailroom config apply FILE` first" in no_mailbox
