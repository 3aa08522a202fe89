"""One bad mail never stops a mailbox: every round ends, a mail that cannot be marked is
reported once and skipped, and a mailbox another poller holds is named with its holder."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from contracts import queues
from contracts.dead import DeadLetter
from contracts.ids import mail_id
from contracts.mail import SourceRef
from contracts.settings import Settings, parse_settings
from services.poller.adapters import SqlLeases, SqlSourceState
from services.poller.sources.base import NotMarked
from services.poller.testing import FakeMailSource
from services.poller.worker import Poller
from services.reports import list_dead_letters
from services.runtime.bus import Delivery, connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore, MailboxState
from services.runtime.stage import secret_box
from services.runtime.store import Store

MAIL = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <%d@example.com>\r\n\r\nbody\r\n"


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    root = tmp_path / "support"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def store(settings: Settings, maildir: Path) -> Store:
    store = Store(settings.effective_database_url)
    store.migrate()
    parsed = parse_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n"
        f"      - {{name: support, protocol: maildir, path: {maildir}, fetch_every_minutes: 1}}\n"
    )
    ConfigStore(store, secret_box(settings)).apply(parsed)
    return store


def mailbox(settings: Settings, store: Store) -> MailboxState:
    [state] = ConfigStore(store, secret_box(settings)).mailboxes()
    return state


def make_poller(settings: Settings, store: Store, source: FakeMailSource | None = None) -> Poller:
    return Poller(
        settings,
        connection=connect("memory://"),
        store=store,
        clock=SystemClock(),
        open_mailbox=None if source is None else (lambda _state, _s: source),
    )


class MarksNothing(FakeMailSource):
    """A mailbox that accepts the mark but keeps listing the mail (the mark does not take).
    Gives up after many listings instead of hanging the test."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    def list_new(self, limit: int) -> list[str]:
        self.listings += 1
        if self.listings > 100:
            raise RuntimeError("the round kept listing the same mail")
        return super().list_new(limit)

    def mark_handed_off(self, refs) -> None:  # type: ignore[no-untyped-def]
        pass


class RefusesToMark(FakeMailSource):
    def mark_handed_off(self, refs) -> None:  # type: ignore[no-untyped-def]
        super().mark_handed_off(refs[1:])
        raise NotMarked({refs[0]: "the server will not flag it"})


def test_a_mail_still_listed_after_its_hand_off_ends_the_round(
    settings: Settings, store: Store
) -> None:
    source = MarksNothing()
    ref = source.deliver(MAIL % 1)
    poller = make_poller(settings, store, source)

    handed_off = poller.poll(mailbox(settings, store))

    assert handed_off == [mail_id("support", ref)], "the mail was handed off once"
    state = mailbox(settings, store)
    assert state.consecutive_failures == 0 and state.last_error is None


def test_a_mail_that_cannot_be_marked_is_reported_once_and_not_a_mailbox_failure(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    source = RefusesToMark()
    stuck, fine = source.deliver(MAIL % 2), source.deliver(MAIL % 3)
    poller = make_poller(settings, store, source)

    with caplog.at_level(logging.WARNING):
        handed_off = poller.poll(mailbox(settings, store))

    assert handed_off == [mail_id("support", stuck), mail_id("support", fine)]
    assert source.handed_off == {fine}
    state = mailbox(settings, store)
    assert state.consecutive_failures == 0 and state.last_error is None
    reports = [r.getMessage() for r in caplog.records if stuck in r.getMessage()]
    assert len(reports) == 1 and "the server will not flag it" in reports[0]
    remembered = SqlSourceState(store, "support", SystemClock())
    assert remembered.taken_refs("unmarked") == {stuck}


def test_maildir_mails_that_cannot_be_marked_go_to_the_dead_letter_queue_once(
    settings: Settings, store: Store, maildir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a handled mail copied back into new/, a name too long to mark, and a good mail
    (maildir / "cur" / "copied:2,S").write_bytes(MAIL % 4)
    (maildir / "new" / "copied").write_bytes(MAIL % 4)
    long_name = "k" * 253
    (maildir / "new" / long_name).write_bytes(MAIL % 5)
    (maildir / "new" / "good").write_bytes(MAIL % 6)
    poller = make_poller(settings, store)

    # When the mailbox is polled twice
    with caplog.at_level(logging.WARNING):
        first = poller.poll(mailbox(settings, store))
        second = poller.poll(mailbox(settings, store))

    # Then every mail was handed on once (the two bad ones as dead letters), each bad one
    # reported once, and the mailbox did not fail
    assert sorted(first) == sorted(mail_id("support", r) for r in ("copied", long_name, "good"))
    assert second == []
    assert sorted((maildir / "cur").iterdir()) == [
        maildir / "cur" / "copied:2,S",
        maildir / "cur" / "good:2,S",
    ]
    for ref in ("copied", long_name):
        assert len([r for r in caplog.records if ref in r.getMessage()]) == 1
    state = mailbox(settings, store)
    assert state.consecutive_failures == 0 and state.last_error is None


def test_a_mailbox_held_by_another_poller_is_named_with_the_holder_and_until_when(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeMailSource()
    source.deliver(MAIL % 7)
    now = SystemClock().now()
    other = SqlLeases(store, holder="mailhost-2:4242:9f3a")
    assert other.acquire("support", now, timedelta(minutes=5))
    poller = make_poller(settings, store, source)

    with caplog.at_level(logging.WARNING):
        polled = poller.poll_all()

    until = (now + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    note = f"held by another poller (mailhost-2:4242) until {until} UTC; skipped"
    assert polled.mail_ids == [] and polled.not_polled == {"support": note}
    assert f"mailbox=support {note}" in caplog.text
    assert source.handed_off == set()


def test_a_lease_whose_holder_process_is_gone_is_taken_over_at_once(
    settings: Settings, store: Store
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = SqlLeases(store, holder=f"{socket.gethostname()}:{gone.stdout.strip()}:0001")
    assert dead.acquire("support", SystemClock().now(), timedelta(minutes=5))
    source = FakeMailSource()
    source.deliver(MAIL % 8)
    poller = make_poller(settings, store, source)

    polled = poller.poll_all()

    assert len(polled.mail_ids) == 1 and polled.not_polled == {}


class SkipsWhatIsGone(FakeMailSource):
    """Moves skip mails no longer in the inbox, as IMAP must (a moved mail has a new UID)."""

    def move_to_error_folder(self, refs) -> None:  # type: ignore[no-untyped-def]
        super().move_to_error_folder([r for r in refs if r in self._inbox])


def dead_letter_for(ref: str) -> Delivery:
    dead = DeadLetter(
        mail_id=mail_id("support", ref),
        helpdesk="default",
        source=SourceRef(mailbox="support", ref=ref),
        stage="parser",
        error_class="MailError",
        error="cannot be parsed",
        attempts=1,
    )
    return Delivery(queues.MAIL_DEAD, dead.model_dump_json().encode(), {})


@pytest.mark.parametrize("deleted", [False, True])
def test_a_move_to_the_error_folder_is_recorded_only_when_it_happened(
    settings: Settings, store: Store, deleted: bool
) -> None:
    # Given a handed-off mail that failed later, and was deleted from the mailbox or not
    source = SkipsWhatIsGone()
    ref = source.deliver(MAIL % 9)
    poller = make_poller(settings, store, source)
    poller.poll(mailbox(settings, store))
    if deleted:
        source._inbox.remove(ref)

    # When its dead letter comes back to the poller
    assert poller.handle_dead(dead_letter_for(ref)) == "ack"

    # Then the entry says it was moved only if the error folder holds it
    with store.transaction() as conn:
        [entry] = list_dead_letters(conn)
    if deleted:
        assert entry["moved_to_error_folder_at"] is None
        assert "does not hold mail" in (entry["move_error"] or "")
    else:
        assert entry["moved_to_error_folder_at"] is not None and entry["move_error"] is None
        assert source.error_folder_refs() == [ref]
