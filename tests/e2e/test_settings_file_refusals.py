"""`mailroom config apply` refuses a careless or hostile settings file with one clear message:
what is wrong, where, and what to write instead; never a traceback, never a half-applied file."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Mailroom, settings_yaml


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    return Mailroom.on_sqlite(tmp_path)


def refused(room: Mailroom, content: str | bytes) -> str:
    path = room.workdir / "settings.yaml"
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    done = room.cli("config", "apply", str(path), check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return done.stderr


def test_a_file_that_is_not_utf8_names_the_byte_and_where_it_is(room: Mailroom) -> None:
    text = settings_yaml(room.maildir).replace("reps@demo.example", "rép@demo.example")

    err = refused(room, text.encode("latin-1"))

    offset = text.encode("latin-1").index(b"\xe9")
    assert f"is not UTF-8 text: byte 0xe9 at offset {offset}" in err
    assert "save it as UTF-8" in err


def test_a_key_written_twice_is_refused_naming_it(room: Mailroom) -> None:
    text = settings_yaml(room.maildir).replace(
        "fetch_every_minutes: 0.05", "fetch_every_minutes: 0.05\n        fetch_every_minutes: 5"
    )

    err = refused(room, text)

    assert "key 'fetch_every_minutes' is written twice" in err


def test_an_alias_bomb_is_refused_at_once(room: Mailroom) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 10):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]")

    err = refused(room, "\n".join(lines) + "\nhelpdesks: *a9\n")

    assert "more than 100000 values once its YAML aliases" in err


def test_a_variable_without_braces_and_an_empty_one_are_refused(room: Mailroom) -> None:
    text = (
        "helpdesks:\n  - id: default\n    mailboxes:\n"
        "      - {name: a, protocol: imaps, host: $MAIL_HOST, password: '${MAIL_PASSWORD}'}\n"
    )
    room.env["MAIL_HOST"] = "mail.example.com"
    room.env["MAIL_PASSWORD"] = ""

    err = refused(room, text)

    assert "helpdesks[0].mailboxes[0].host: holds `$MAIL_HOST`" in err
    assert "write `${MAIL_HOST}`" in err
    assert "environment variable(s) empty: MAIL_PASSWORD" in err


def test_an_error_folder_out_of_the_maildir_is_refused_and_nothing_is_made(
    room: Mailroom,
) -> None:
    room.use_demo_maildir()
    text = settings_yaml(room.maildir).replace("name: Errors", 'name: "/../../../escape/x"')

    err = refused(room, text)

    assert "helpdesks[0].mailboxes[0].error_folder.name" in err
    assert "a Maildir++ folder is a sub-folder of the Maildir" in err
    assert not list(room.workdir.rglob("escape"))


def test_two_help_desks_on_one_maildir_are_refused_naming_both(room: Mailroom) -> None:
    desk = settings_yaml(room.maildir).split("helpdesks:\n", 1)[1]
    second = desk.replace("id: default", "id: sales").replace("name: demo", "name: sales")

    err = refused(room, "helpdesks:\n" + desk + second)

    assert "help desk 'sales' mailbox 'sales' reads the same mailbox as" in err
    assert "help desk 'default' mailbox 'demo'" in err


def test_an_extension_with_a_space_is_refused_with_the_fix(room: Mailroom) -> None:
    text = settings_yaml(room.maildir).replace("vbs, scr", "'*.vbs', 'P S1', scr")

    err = refused(room, text)

    assert "helpdesks[0].attachments.restricted_extensions[6]" in err
    assert "a space cannot be part of an extension" in err
