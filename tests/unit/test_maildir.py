"""What is particular to a local Maildir: its folders, flags and Maildir++ error folder."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from services.poller.sources.base import NotMarked
from services.poller.sources.maildir import MaildirSource
from services.poller.testing import InMemorySourceState
from services.runtime.errors import ConfigError, InfraError

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


# -- mail that cannot be marked, read or moved ---------------------------------------------


def fetched(source: MaildirSource, refs: list[str]) -> dict[str, object]:
    return {item.ref: item for item in source.fetch_many(refs)}


def test_a_copy_in_new_of_a_mail_already_read_in_cur_is_fetched_as_unmarkable(tmp_path):
    # Given a handed-off mail copied back into new/ under the same key
    root = maildir(tmp_path / "Maildir")
    put(root, "cur", "a.host:2,S")
    put(root, "new", "a.host")
    source = MaildirSource(root, mailbox="local")

    # When the poller fetches it
    [item] = source.fetch_many(source.list_new(10))

    # Then it is not downloaded: marking it read would replace the mail already in cur/
    assert item.raw is None
    assert item.error_class == "MailUnmarkable"
    assert "a.host" in item.skipped and "cur/" in item.skipped
    assert names(root / "new") == ["a.host"] and names(root / "cur") == ["a.host:2,S"]


def test_marking_never_replaces_a_mail_of_the_same_key(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "cur", "a.host:2,S", raw=b"Subject: first\n\none\n")
    put(root, "new", "a.host", raw=b"Subject: second\n\ntwo\n")
    put(root, "new", "b.host")
    source = MaildirSource(root, mailbox="local")

    with pytest.raises(NotMarked) as caught:
        source.mark_handed_off(["a.host", "b.host"])

    # The other mail is marked; the one that could not be is named, with why
    assert list(caught.value.failures) == ["a.host"]
    assert "already" in caught.value.failures["a.host"]
    assert names(root / "new") == ["a.host"]
    assert names(root / "cur") == ["a.host:2,S", "b.host:2,S"]
    assert (root / "cur" / "a.host:2,S").read_bytes() == b"Subject: first\n\none\n"


def test_a_name_too_long_to_mark_read_is_fetched_as_unmarkable(tmp_path):
    root = maildir(tmp_path / "Maildir")
    long_key = "k" * 253  # cur/KEY:2,S would be 257 bytes, over NAME_MAX (255)
    put(root, "new", long_key)
    put(root, "new", "b.host", age=1)
    source = MaildirSource(root, mailbox="local")

    items = fetched(source, source.list_new(10))

    assert items[long_key].raw is None
    assert items[long_key].error_class == "MailUnmarkable"
    assert "too long" in items[long_key].skipped
    assert items["b.host"].raw == RAW


def test_an_unreadable_mail_is_fetched_as_unreadable_and_the_others_are_read(tmp_path):
    root = maildir(tmp_path / "Maildir")
    (root / "new" / "a.host").mkdir()  # a folder where a mail file should be
    put(root, "new", "b.host")
    source = MaildirSource(root, mailbox="local")

    items = fetched(source, ["a.host", "b.host"])

    assert items["a.host"].raw is None
    assert items["a.host"].error_class == "MailUnreadable"
    assert items["b.host"].raw == RAW


def test_a_mail_gone_before_it_is_read_is_left_out(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "b.host")
    source = MaildirSource(root, mailbox="local")

    assert list(fetched(source, ["a.host", "b.host"])) == ["b.host"]


def test_a_mail_skipped_once_is_not_listed_again_until_moved_back(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    put(root, "new", "b.host", age=1)
    state = InMemorySourceState()
    source = MaildirSource(root, mailbox="local", state=state)

    state.mark_taken([("a.host", None)], "skipped")
    state.mark_taken([("b.host", None)], "handed_off")  # marked unread again by a person

    assert source.list_new(10) == ["b.host"]


def test_moving_a_mail_no_longer_there_to_the_error_folder_fails(tmp_path):
    root = maildir(tmp_path / "Maildir")
    source = MaildirSource(root, mailbox="local")

    with pytest.raises(InfraError, match="no longer"):
        source.move_to_error_folder(["gone.host"])


def _marked_by_the_poller_after_listing(
    monkeypatch: pytest.MonkeyPatch, source: MaildirSource, root: Path, ref: str
) -> None:
    """The poller marks ``ref`` read just after ``source`` has listed the inbox: the dead
    letter of a fast parser races the poller's own marking."""
    poller, listed = MaildirSource(root, mailbox="local"), source._index

    def listed_then_marked(where: Path) -> dict[str, list[tuple[str, Path]]]:
        found = listed(where)
        if where == root and (root / "new" / ref).exists():
            poller.mark_handed_off([ref])
        return found

    monkeypatch.setattr(source, "_index", listed_then_marked)


def test_a_mail_marked_read_while_it_is_moved_to_the_error_folder_still_gets_there(
    tmp_path, monkeypatch
):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    source = MaildirSource(root, mailbox="local")
    _marked_by_the_poller_after_listing(monkeypatch, source, root, "a.host")

    source.move_to_error_folder(["a.host"])

    assert (names(root / "new"), names(root / "cur")) == ([], [])
    assert names(root / ".Errors" / "cur") == ["a.host:2,S"]


def test_a_mail_moved_to_the_error_folder_while_it_is_marked_read_is_no_failure(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    poller, mover = MaildirSource(root, mailbox="local"), MaildirSource(root, mailbox="local")
    listed = poller._index

    def listed_then_moved(where: Path) -> dict[str, list[tuple[str, Path]]]:
        found = listed(where)
        mover.move_to_error_folder(["a.host"])
        return found

    poller._index = listed_then_moved  # type: ignore[method-assign]

    poller.mark_handed_off(["a.host"])  # raises no NotMarked: the mail has left the inbox

    assert names(root / ".Errors" / "cur") == ["a.host:2,"]


def test_moving_a_mail_already_in_the_error_folder_again_changes_nothing(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    source = MaildirSource(root, mailbox="local")
    source.move_to_error_folder(["a.host"])

    source.move_to_error_folder(["a.host"])  # a redelivered dead letter

    assert source.error_folder_refs() == ["a.host"]


@pytest.mark.parametrize("name", ["Errors/Failed", "", "/../../escape/x", "."])
def test_an_error_folder_name_that_is_no_sub_folder_moves_nothing_and_says_so(tmp_path, name):
    # Given a mail in cur/ and an error folder name that does not name a sub-folder
    root = maildir(tmp_path / "Maildir")
    put(root, "cur", "a.host:2,S")
    source = MaildirSource(root, mailbox="local", error_folder=name)

    # When it is moved to the error folder, that fails with the fix
    with pytest.raises(ConfigError, match="error_folder.name"):
        source.move_to_error_folder(["a.host"])

    # And the mail is where it was, and nothing was made outside the Maildir
    assert names(root / "cur") == ["a.host:2,S"]
    assert names(tmp_path) == ["Maildir"]
    assert names(root) == ["cur", "new", "tmp"]


def test_an_error_folder_that_cannot_be_made_is_an_error_not_an_oserror(tmp_path):
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "a.host")
    (root / ".Errors").write_text("a file where the folder should be")
    source = MaildirSource(root, mailbox="local")

    with pytest.raises(InfraError, match="error folder"):
        source.move_to_error_folder(["a.host"])
    assert names(root / "new") == ["a.host"]


def test_a_mail_too_long_to_move_to_the_error_folder_fails_and_stays(tmp_path):
    root = maildir(tmp_path / "Maildir")
    long_key = "k" * 254  # .Errors/cur/KEY:2, would be 257 bytes
    put(root, "new", long_key)
    source = MaildirSource(root, mailbox="local")

    with pytest.raises(InfraError, match="too long"):
        source.move_to_error_folder([long_key])
    assert names(root / "new") == [long_key]


def _waited(signum: int, frame: object) -> None:
    raise AssertionError("the round waited on a named pipe")


def _fifo(root: Path, name: str) -> None:
    os.mkfifo(root / "new" / name)


def _outside_link(root: Path, name: str) -> None:
    secret = root.parent / "secret.txt"
    secret.write_bytes(b"root:HASH-OF-A-PASSWORD\n")
    (root / "new" / name).symlink_to(secret)


def _folder(root: Path, name: str) -> None:
    (root / "new" / name).mkdir()


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_fifo, "named pipe"), (_outside_link, "symbolic link"), (_folder, "folder")],
)
def test_an_entry_that_is_no_regular_file_is_never_read(tmp_path, make, kind):
    # Given a named pipe (reading it would wait for ever), a link to a file outside the
    # Maildir (reading it would put that file into a request), or a folder in new/
    root = maildir(tmp_path / "Maildir")
    make(root, "odd.host")
    put(root, "new", "b.host", age=1)
    source = MaildirSource(root, mailbox="local")

    # When the round fetches what it lists (a wait on the pipe fails the test, not hangs it)
    signal.signal(signal.SIGALRM, _waited)
    signal.alarm(20)
    try:
        items = fetched(source, source.list_new(10))
    finally:
        signal.alarm(0)

    # Then that entry is unreadable, saying what it is, and the other mail is read
    assert items["odd.host"].raw is None
    assert items["odd.host"].error_class == "MailUnreadable"
    assert kind in items["odd.host"].skipped
    assert items["b.host"].raw == RAW
    with pytest.raises(ConfigError, match=kind):
        source.fetch_raw("odd.host")  # as `mailbox test` reads it


def test_a_mail_over_max_mail_mb_is_refused_by_its_size_without_reading_it(tmp_path):
    root = maildir(tmp_path / "Maildir")
    with (root / "new" / "big.host").open("wb") as big:
        big.truncate(3 * 1024 * 1024)  # sparse: 3 MB that were never written
    put(root, "new", "b.host", age=1)
    source = MaildirSource(root, mailbox="local", max_mail_mb=2)

    items = fetched(source, ["big.host", "b.host"])

    assert items["big.host"].raw is None
    assert items["big.host"].error_class == "MailTooLarge"
    assert "3.0 MB" in items["big.host"].skipped and "max_mail_mb" in items["big.host"].skipped
    assert items["b.host"].raw == RAW


def test_a_file_name_that_is_not_utf8_is_read_and_marked_under_an_escaped_ref(tmp_path):
    # Given a mail whose file name holds bytes that are not UTF-8
    root = maildir(tmp_path / "Maildir")
    raw_name = b"bad\xff\xfe.host"
    with open(os.fsencode(root / "new") + b"/" + raw_name, "wb") as mail:
        mail.write(RAW)
    source = MaildirSource(root, mailbox="local")

    # When it is listed, read and marked
    [ref] = source.list_new(10)
    items = fetched(source, [ref])
    source.mark_handed_off([ref])

    # Then its ref is text that can be stored and shown, and the file keeps its own name
    assert ref == "bad\\xff\\xfe.host"
    ref.encode("utf-8")
    assert items[ref].raw == RAW
    assert os.listdir(os.fsencode(root / "cur")) == [raw_name + b":2,S"]


def test_a_maildir_whose_new_folder_is_a_link_elsewhere_is_refused(tmp_path):
    # Given new/ linked to a folder of files that are no mail of this mailbox (as /etc)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "shadow").write_bytes(b"root:HASH-OF-A-PASSWORD\n")
    root = maildir(tmp_path / "Maildir", subs=("cur", "tmp"))
    (root / "new").symlink_to(elsewhere)

    # Then the mailbox is refused, and nothing there is listed
    with pytest.raises(ConfigError, match="new/ in .* is a symbolic link"):
        MaildirSource(root, mailbox="local").list_new(10)
