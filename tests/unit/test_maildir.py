"""What is particular to a local Maildir: its folders, flags and Maildir++ error folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.poller.sources.maildir import MaildirSource
from services.runtime.errors import ConfigError

RAW = b"From: ann@example.org\nSubject: hello\n\nHi\n"


def maildir(root: Path, subs: tuple[str, ...] = ("cur", "new", "tmp")) -> Path:
    for sub in subs:
        (root / sub).mkdir(parents=True)
    return root


def put(root: Path, sub: str, name: str, raw: bytes = RAW, age: int = 0) -> Path:
    path = root / sub / name
    path.write_bytes(raw)
    os.utime(path, (1_700_000_000 + age, 1_700_000_000 + age))
    return path


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_missing_folder_is_a_config_error_naming_it_and_the_fix(tmp_path):
    path = tmp_path / "no" / "Maildir"

    with pytest.raises(ConfigError) as caught:
        MaildirSource(path, mailbox="local")

    message = str(caught.value)
    assert str(path) in message
    assert "'local'" in message
    assert "create it or fix `path`" in message


def test_a_file_where_the_folder_should_be_is_a_config_error(tmp_path):
    path = tmp_path / "Maildir"
    path.write_text("not a folder")

    with pytest.raises(ConfigError, match="does not exist"):
        MaildirSource(path, mailbox="local")


def test_a_folder_without_the_maildir_sub_folders_says_which_are_missing(tmp_path):
    root = maildir(tmp_path / "Maildir", subs=("cur",))

    with pytest.raises(ConfigError) as caught:
        MaildirSource(root, mailbox="local")

    message = str(caught.value)
    assert str(root) in message
    assert "no new, tmp/" in message
    assert "`path`" in message


def test_a_mail_a_person_already_read_is_not_listed(tmp_path):
    # Given a mail read in a mail client (cur/, flag S) and one only flagged (cur/, flag F)
    root = maildir(tmp_path / "Maildir")
    put(root, "cur", "1700000001.M1P1.host:2,S", age=1)
    put(root, "cur", "1700000002.M2P1.host:2,F", age=2)
    put(root, "new", "1700000003.M3P1.host", age=3)

    # When the poller lists new mail
    listed = MaildirSource(root, mailbox="local").list_new(10)

    # Then only unread mail is new; refs are keys, without the flags
    assert listed == ["1700000002.M2P1.host", "1700000003.M3P1.host"]


def test_a_mail_still_being_delivered_in_tmp_is_not_listed(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "tmp", "1700000001.M1P1.host")

    assert MaildirSource(root, mailbox="local").list_new(10) == []


def test_a_handed_off_mail_is_marked_read_in_cur_keeping_its_flags(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    put(root, "cur", "b.host:2,F")
    source = MaildirSource(root, mailbox="local")

    source.mark_handed_off(["a.host", "b.host"])

    assert names(root / "new") == []
    assert names(root / "cur") == ["a.host:2,S", "b.host:2,FS"]
    assert (root / "cur" / "a.host:2,S").read_bytes() == RAW


def test_the_error_folder_is_a_maildir_plus_plus_sub_folder(tmp_path):
    # Given a new mail
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    source = MaildirSource(root, mailbox="local")

    # When it is moved to the error folder
    source.move_to_error_folder(["a.host"])

    # Then it sits in .Errors, a Maildir with cur/new/tmp that mail clients list
    errors = root / ".Errors"
    assert {"cur", "new", "tmp", "maildirfolder"} <= set(os.listdir(errors))
    assert [n.split(":2,")[0] for n in names(errors / "cur")] == ["a.host"]
    assert names(root / "new") == []


def test_the_error_folder_takes_its_configured_name(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    source = MaildirSource(root, mailbox="local", error_folder="Failed")

    source.move_to_error_folder(["a.host"])

    assert source.error_folder_refs() == ["a.host"]
    assert (root / ".Failed" / "cur").is_dir()
    assert not (root / ".Errors").exists()


@pytest.mark.parametrize("name", ["/../../../escape/x", "../escape", "Errors/Failed", "", "."])
def test_an_error_folder_outside_the_maildir_is_refused_before_anything_is_made(tmp_path, name):
    root = maildir(tmp_path / "box" / "Maildir")
    put(root, "new", "a.host")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    with pytest.raises(ConfigError, match="error_folder.name"):
        MaildirSource(root, mailbox="local", error_folder=name).move_to_error_folder(["a.host"])

    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_a_mail_moved_back_lands_in_new_unread(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "cur", "a.host:2,S")
    source = MaildirSource(root, mailbox="local")
    source.move_to_error_folder(["a.host"])

    source.move_to_inbox(["a.host"])

    assert names(root / "new") == ["a.host"]
    assert names(root / ".Errors" / "cur") == []
    assert source.list_new(10) == ["a.host"]


def test_mails_of_equal_age_are_listed_by_key(tmp_path):
    root = maildir(tmp_path / "Maildir")
    for key in ("c.host", "a.host", "b.host"):
        put(root, "new", key, age=0)

    assert MaildirSource(root, mailbox="local").list_new(10) == ["a.host", "b.host", "c.host"]
