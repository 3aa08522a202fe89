"""Entries, files and variables a careless or hostile user leaves where Mailroom reads:
every command ends, with a line saying what to fix, no traceback and no secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import Mailroom

SECRET = "root:S3CRET-HASH"


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    room = Mailroom.on_sqlite(tmp_path)
    room.use_demo_maildir()
    room.apply_settings()
    return room


def test_a_pipe_a_link_out_and_a_folder_in_the_maildir_are_dead_lettered_never_read(
    room: Mailroom, tmp_path: Path
) -> None:
    # Given a named pipe nobody writes to, a link to a file outside the Maildir, and a folder
    new = room.maildir / "new"
    os.mkfifo(new / "pipe.host")
    (tmp_path / "shadow").write_text(SECRET)
    (new / "link.host").symlink_to(tmp_path / "shadow")
    (new / "folder.host").mkdir()

    # When Mailroom runs once (a wait on the pipe would end in the timeout)
    summary = room.json("run", "--once")

    # Then each is dead-lettered saying what it is, the other mails are handled, and the
    # linked file is in no request
    dead = {d["source"]["ref"]: d["error"] for d in summary["dead"]}
    assert "named pipe" in dead["pipe.host"]
    assert "symbolic link" in dead["link.host"]
    assert "folder" in dead["folder.host"]
    assert summary["mailbox_errors"] == [] and summary["requests_created"] > 0
    assert "S3CRET" not in room.cli("requests", "list", "--json").stdout


def test_a_named_pipe_given_as_the_settings_file_is_refused_at_once(room: Mailroom) -> None:
    os.mkfifo(room.workdir / "pipe.yaml")

    done = room.cli("config", "apply", str(room.workdir / "pipe.yaml"), check=False, timeout=60)

    assert done.returncode == 2
    assert "is a named pipe, not a file" in done.stderr


def test_a_dead_letter_id_too_big_to_exist_is_a_usage_error(room: Mailroom) -> None:
    done = room.cli("dlq", "show", "99999999999999999999", check=False)

    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not in the range" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILROOM_DATABASE_URL", "postgresql://ann:S3CRET-PW@[::1/mailroom"),
        ("MAILROOM_BROKER_URL", "amqp://ann:S3CRET-PW@[::1//"),
    ],
)
def test_a_url_that_cannot_be_read_is_named_without_its_password(
    room: Mailroom, variable: str, value: str
) -> None:
    room.env[variable] = value

    done = room.cli("run", "--once", "--json", check=False)

    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"mailroom: {variable}: " in done.stderr
    assert "S3CRET" not in done.stderr + done.stdout


def test_inspect_names_a_file_with_a_line_break_on_one_line(room: Mailroom) -> None:
    done = room.cli("inspect", "no\nsuch\x1b[2K.eml", check=False)

    assert done.returncode == 2
    assert done.stderr == "mailroom: cannot read no\\nsuch\\x1b[2K.eml: No such file or directory\n"
