"""Behaviour every mailbox adapter must have, run against each of them (STYLE §4).

A new adapter subclasses ``MailSourceContract`` and overrides the ``source_with`` fixture:
given raw mails, it delivers them into a fresh mailbox, oldest first, and returns the source
and the refs of those mails in the same order. An adapter with an error folder
(``supports_error_folder``) also inherits ``ErrorFolderContract``; POP has none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.poller.sources.base import MailSource
from services.poller.sources.maildir import MaildirSource
from services.poller.testing import FakeMailSource
from services.runtime.errors import InfraError
from services.runtime.mail_text import message_id_of

SourceWith = Callable[[list[bytes]], tuple[MailSource, list[str]]]


def raw_mail(n: int) -> bytes:
    """A small mail whose bytes are distinct per ``n`` and include CRLF and 8-bit bytes.

    No NUL byte: IMAP literals cannot carry one (Dovecot would serve 0x80 instead).
    """
    headers = (
        f"From: customer{n}@example.org\r\nTo: support@example.com\r\n"
        f"Subject: mail {n}\r\nMessage-ID: <{n}@example.org>\r\n\r\n"
    )
    return headers.encode() + f"Body {n}: Grüße\r\n".encode("latin-1") + b"\xff\r\n"


MAILS = [raw_mail(n) for n in range(3)]


class MailSourceContract:
    """Behaviour tests every MailSource adapter must pass."""

    @pytest.fixture
    def source_with(self) -> Iterator[SourceWith]:
        raise NotImplementedError("an adapter's test class provides source_with")

    def test_a_new_mail_is_listed_once_and_fetched_with_its_exact_bytes(self, source_with):
        source, [ref] = source_with([MAILS[0]])

        assert source.list_new(10) == [ref]
        assert source.fetch_raw(ref) == MAILS[0]

    def test_mails_are_listed_oldest_first(self, source_with):
        source, refs = source_with(MAILS)

        assert source.list_new(10) == refs
        assert [source.fetch_raw(r) for r in source.list_new(10)] == MAILS

    def test_listing_and_fetching_mark_nothing(self, source_with):
        source, refs = source_with(MAILS)

        source.list_new(10)
        source.fetch_raw(refs[0])

        assert source.list_new(10) == refs

    def test_at_most_limit_mails_are_listed_oldest_first(self, source_with):
        source, refs = source_with(MAILS)

        assert source.list_new(2) == refs[:2]
        assert source.list_new(1) == refs[:1]

    def test_a_handed_off_mail_is_not_listed_again(self, source_with):
        # Given three new mails
        source, refs = source_with(MAILS)

        # When the oldest is handed off
        source.mark_handed_off([refs[0]])

        # Then only the other two are new
        assert source.list_new(10) == refs[1:]

    def test_handing_off_twice_or_an_unknown_ref_changes_nothing_else(self, source_with):
        source, refs = source_with(MAILS)

        source.mark_handed_off([refs[0], "no-such-mail"])
        source.mark_handed_off([refs[0]])

        assert source.list_new(10) == refs[1:]

    def test_the_oldest_unmarked_mail_is_fetched_without_marking_it(self, source_with):
        # Given mails, the oldest of them already handed off
        source, refs = source_with(MAILS)
        source.mark_handed_off([refs[0]])

        # When a sample mail is fetched
        sample = source.fetch_oldest_unmarked()

        # Then it is the oldest one still new, and it stays new
        assert sample == MAILS[1]
        assert source.list_new(10) == refs[1:]
        assert source.fetch_oldest_unmarked() == MAILS[1]

    def test_no_sample_mail_when_everything_is_handed_off(self, source_with):
        source, refs = source_with(MAILS[:1])
        source.mark_handed_off(refs)

        assert source.fetch_oldest_unmarked() is None
        assert source.list_new(10) == []

    def test_an_empty_mailbox_lists_nothing(self, source_with):
        source, refs = source_with([])

        assert refs == []
        assert source.list_new(10) == []
        assert source.fetch_oldest_unmarked() is None
        assert source.error_folder_refs() == []

    def test_closing_a_source_twice_is_harmless(self, source_with):
        source, _ = source_with(MAILS)

        source.close()
        source.close()

    def test_a_source_with_an_error_folder_runs_the_error_folder_contract(self, source_with):
        source, _ = source_with([])

        assert source.supports_error_folder == isinstance(self, ErrorFolderContract), (
            "an adapter with an error folder must also inherit ErrorFolderContract"
        )


class ErrorFolderContract:
    """Error-folder behaviour, for adapters whose mailbox has folders (not POP).

    Mixed in next to ``MailSourceContract``, which provides the ``source_with`` fixture.
    A ref names a mail in one folder: on IMAP a moved mail has a new ref (a new UID), on a
    Maildir the same one, so these tests follow mails by their bytes.
    """

    def test_a_mail_moved_to_the_error_folder_is_no_longer_new(self, source_with):
        # Given new mails
        source, refs = source_with(MAILS)
        assert source.supports_error_folder

        # When one is moved to the error folder
        source.move_to_error_folder([refs[1]])

        # Then the error folder holds it and the inbox no longer lists it
        assert len(source.error_folder_refs()) == 1
        assert source.list_new(10) == [refs[0], refs[2]]

    def test_a_handed_off_mail_can_be_moved_to_the_error_folder(self, source_with):
        # The usual path: the poller handed it off, then a later stage dead-lettered it
        source, refs = source_with(MAILS)
        source.mark_handed_off(refs)

        source.move_to_error_folder([refs[0]])

        assert len(source.error_folder_refs()) == 1

    def test_a_mail_moved_back_to_the_inbox_is_new_again(self, source_with):
        # Given a handed-off mail that went to the error folder
        source, refs = source_with(MAILS)
        source.mark_handed_off([refs[0]])
        source.move_to_error_folder([refs[0]])

        # When an admin moves it back to the inbox
        source.move_to_inbox(source.error_folder_refs())

        # Then it is new again, with the same bytes
        assert source.error_folder_refs() == []
        listed = source.list_new(10)
        assert len(listed) == 3
        assert MAILS[0] in [source.fetch_raw(r) for r in listed]

    def test_the_error_folder_tells_each_mails_message_id(self, source_with):
        # An entry finds its mail there by Message-ID when the folder gives it a new ref
        source, refs = source_with(MAILS)
        source.mark_handed_off(refs)
        source.move_to_error_folder([refs[0], refs[2]])

        found = source.error_folder_message_ids()

        assert sorted(found) == source.error_folder_refs()
        assert sorted(found.values()) == sorted([message_id_of(MAILS[0]), message_id_of(MAILS[2])])

        source.move_to_inbox([r for r, mid in found.items() if mid == message_id_of(MAILS[2])])
        assert list(source.error_folder_message_ids().values()) == [message_id_of(MAILS[0])]

    def test_moving_unknown_refs_back_does_nothing(self, source_with):
        source, refs = source_with(MAILS)

        source.move_to_inbox(["no-such-mail", refs[0]])

        assert source.error_folder_refs() == []
        assert source.list_new(10) == refs

    def test_fetching_a_mail_that_left_the_inbox_is_an_infra_error(self, source_with):
        source, refs = source_with(MAILS)
        source.move_to_error_folder([refs[0]])

        with pytest.raises(InfraError):
            source.fetch_raw(refs[0])

    def test_moving_to_the_error_folder_twice_is_harmless(self, source_with):
        source, refs = source_with(MAILS)

        source.move_to_error_folder([refs[0]])
        source.move_to_error_folder([refs[0]])

        assert len(source.error_folder_refs()) == 1
        assert source.list_new(10) == refs[1:]


# -- Maildir ------------------------------------------------------------------------------


def deliver_maildir(root: Path, mails: list[bytes]) -> list[str]:
    """Deliver mails into ``root/new``, oldest first.

    Keys sort in the opposite order of age, so a listing by name would come out reversed:
    only the modification time says which mail is older.
    """
    refs = []
    for i, raw in enumerate(mails):
        key = f"{1700000900 - i}.M{i}P4242.mailroom"
        path = root / "new" / key
        path.write_bytes(raw)
        os.utime(path, (1_700_000_000 + i * 60, 1_700_000_000 + i * 60))
        refs.append(key)
    return refs


class TestMaildirSource(MailSourceContract, ErrorFolderContract):
    @pytest.fixture
    def source_with(self, tmp_path: Path) -> Iterator[SourceWith]:
        def make(mails: list[bytes]) -> tuple[MailSource, list[str]]:
            root = tmp_path / "Maildir"
            for sub in ("cur", "new", "tmp"):
                (root / sub).mkdir(parents=True)
            refs = deliver_maildir(root, mails)
            return MaildirSource(root, mailbox="local"), refs

        yield make


# -- the in-memory fake used by unit tests --------------------------------------------------


class TestFakeMailSource(MailSourceContract, ErrorFolderContract):
    @pytest.fixture
    def source_with(self) -> Iterator[SourceWith]:
        def make(mails: list[bytes]) -> tuple[MailSource, list[str]]:
            source = FakeMailSource()
            return source, [source.deliver(raw) for raw in mails]

        yield make
