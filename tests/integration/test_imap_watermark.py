"""IMAP rounds cost what the new mail costs, not what the folder keeps: real Dovecot, real
store (SQLite), the poller's own round. Each round opens its session as the poller does.

The commands each round sends are read from its protocol trace; the store reads from the
``SourceState`` it was given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mailservers import Dovecot

from contracts.ids import mail_id
from contracts.settings import MailboxSettings
from services.poller.adapters import SqlFetchedLog, SqlSourceState
from services.poller.rounds import MailboxRound
from services.poller.sources.base import Cursor, Fetched
from services.poller.sources.debug import ProtocolTrace, redact_line
from services.poller.sources.imap import ImapSource
from services.poller.sources.imap_session import ImapSession, Selected
from services.runtime.bus import Publisher, connect
from services.runtime.clock import SystemClock
from services.runtime.store import Store

pytestmark = pytest.mark.infra

MAILBOX = "support"


def mail(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: customer@example.org\r\nTo: help@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


class Commands(ProtocolTrace):
    """The trace of one session, keeping each command sent (without its tag)."""

    def __init__(self) -> None:
        super().__init__(MAILBOX)
        self.sent_commands: list[str] = []

    def sent(self, data: bytes) -> None:
        super().sent(data)
        for line in data.splitlines():
            tag, _, command = redact_line(line).partition(" ")
            if tag and command:
                self.sent_commands.append(command)

    def searches(self) -> list[str]:
        return [c for c in self.sent_commands if "SEARCH" in c.upper()]


class Watched(SqlSourceState):
    """The store's state, noting the reads of taken refs a round makes."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, MAILBOX, SystemClock())
        self.whole_reads = 0
        self.refs_checked = 0

    def taken_refs(self, reason: str | None = None) -> set[str]:
        self.whole_reads += 1
        return super().taken_refs(reason)

    def taken_among(self, refs: list[str]) -> set[str]:
        self.refs_checked += len(refs)
        return super().taken_among(refs)


class LosesOne(ImapSource):
    """A session in which one mail cannot be downloaded (the server keeps refusing it)."""

    lost: str = ""

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        return (f for f in super().fetch_many(refs) if f.ref != self.lost)


@dataclass
class Round:
    refs: list[str]
    commands: Commands
    state: Watched


@dataclass
class Account:
    dovecot: Dovecot
    store: Store
    user: str
    password: str

    def box(self, **changes: object) -> MailboxSettings:
        fields: dict[str, object] = {
            "name": MAILBOX,
            "protocol": "imaps",
            "host": "localhost",
            "port": self.dovecot.imaps_port,
            "username": self.user,
            "password": self.password,
            "timeout_seconds": 20,
            "import_existing": "all",
            "tls": {"verify": True, "ca_file": str(self.dovecot.ca_file)},
        }
        return MailboxSettings.model_validate(fields | changes)

    def source(self, kind: type[ImapSource] = ImapSource, **changes: object) -> ImapSource:
        return kind(self.box(**changes), SqlSourceState(self.store, MAILBOX, SystemClock()))

    def poll(self, kind: type[ImapSource] = ImapSource, lost: str = "", **changes: object) -> Round:
        """One poller round on a session of its own; the refs it handed on (fetched, or
        dead-lettered without download)."""
        commands, state = Commands(), Watched(self.store)
        source = kind(self.box(**changes), state, trace=commands)
        if isinstance(source, LosesOne):
            source.lost = lost
        publisher = Publisher(connect("memory://"))
        try:
            mail_ids = MailboxRound(
                mailbox=MAILBOX,
                helpdesk="default",
                source=source,
                state=state,
                publisher=publisher,
                store=self.store,
                fetched=SqlFetchedLog(self.store),
                clock=SystemClock(),
            ).run()
        finally:
            source.close()
            publisher.close()
        taken = SqlSourceState(self.store, MAILBOX, SystemClock()).taken_refs()
        by_id = {mail_id(MAILBOX, ref): ref for ref in taken}
        return Round([by_id[m] for m in mail_ids], commands, state)

    def refs(self) -> list[str]:
        validity = self.dovecot.uidvalidity(self.user)
        return [f"{validity}:{uid}" for uid in self.dovecot.imap_uids(self.user)]

    def expunge_all(self) -> None:
        with self.dovecot.imap(self.user) as client:
            client.select("INBOX")
            client.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
            client.expunge()


@pytest.fixture
def account(dovecot: Dovecot, tmp_path: Path) -> Account:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    user, password = f"w{uuid.uuid4().hex[:10]}@example.test", uuid.uuid4().hex
    dovecot.add_user(user, password)
    return Account(dovecot, store, user, password)


def test_a_round_without_new_mail_lists_nothing_and_reads_no_taken_refs(account) -> None:
    # Given a folder whose 120 mails (more than a batch) were all handed off
    account.dovecot.deliver_many(account.user, [mail(f"m{n}") for n in range(120)])
    first = account.poll()

    # When the next round finds no new mail
    idle = account.poll()

    # Then it searched nothing and read no taken refs: its cost does not grow with the folder
    assert first.refs == account.refs()
    assert idle.refs == []
    assert idle.commands.searches() == []
    assert any(c.startswith("SELECT") for c in idle.commands.sent_commands)
    assert (idle.state.whole_reads, idle.state.refs_checked) == (0, 0)


def test_new_mail_is_found_by_searching_above_the_watermark_only(account) -> None:
    account.dovecot.deliver_many(account.user, [mail(f"m{n}") for n in range(30)])
    account.poll()
    account.dovecot.deliver(account.user, mail("new"))

    found = account.poll()

    assert found.refs == account.refs()[30:]
    assert found.commands.searches()[0] == "UID SEARCH UID 31:*"
    assert not [c for c in found.commands.searches() if "ALL" in c]
    assert found.state.whole_reads == 0 and found.state.refs_checked <= 2


def test_a_mail_not_taken_is_fetched_later_though_mail_above_it_was_taken(account) -> None:
    # Given three mails of which the middle one could not be downloaded in a round
    account.dovecot.deliver_many(account.user, [mail("one"), mail("two"), mail("three")])
    one, two, three = account.refs()
    failed = account.poll(LosesOne, lost=two)

    # When the next rounds run with the server answering again
    retried = account.poll()
    idle = account.poll()

    # Then the mail below the last one taken is fetched, then the folder is settled
    assert failed.refs == [one, three]
    assert retried.refs == [two]
    assert idle.refs == [] and idle.commands.searches() == []


def test_after_a_uidvalidity_change_mail_under_reused_uids_is_fetched(account) -> None:
    # Given three mails handed off, then gone, and a folder renumbered by the server
    account.dovecot.deliver_many(account.user, [mail("one"), mail("two"), mail("three")])
    before = account.poll()
    account.expunge_all()
    account.dovecot.uidvalidity_change(account.user)

    # When a mail arrives: UID 1 again, under the new UIDVALIDITY
    account.dovecot.deliver(account.user, mail("after the change"))
    after = account.poll()

    assert len(before.refs) == 3
    assert after.refs == account.refs()
    assert after.refs[0].endswith(":1")


def test_mail_moved_back_from_the_error_folder_is_fetched_again(account) -> None:
    account.dovecot.deliver(account.user, mail("retry me"))
    [ref] = account.poll().refs
    source = account.source()
    source.move_to_error_folder([ref])
    idle = account.poll()

    source.move_to_inbox(source.error_folder_refs())
    source.close()
    again = account.poll()

    assert idle.refs == []
    assert again.refs == account.refs() and again.refs != [ref]


def test_a_taken_ref_let_go_below_the_watermark_is_fetched_again(account) -> None:
    # Given a big mail skipped without download between two handed off
    account.dovecot.deliver_many(account.user, [mail("one"), mail("big", "x" * 120_000), mail("3")])
    first = account.poll(max_mail_mb=0.05)
    state = SqlSourceState(account.store, MAILBOX, SystemClock())
    [big] = state.taken_refs("skipped")
    settled = account.poll(max_mail_mb=0.05)

    # When it is let go (a dead-letter replay does so) and the size limit raised
    state.forget([big])
    again = account.poll(max_mail_mb=1)

    assert set(first.refs) == set(account.refs())
    assert settled.refs == [] and settled.commands.searches() == []
    assert again.refs == [big]
    assert state.taken_refs("handed_off") == set(account.refs())


def test_without_uidnext_an_unchanged_highestmodseq_spares_the_search(account, monkeypatch):
    # Given a server that sends HIGHESTMODSEQ (CONDSTORE) but no UIDNEXT in SELECT answers
    selected = ImapSession.select

    def without_uidnext(session: ImapSession, *args: object, **kwargs: object) -> int | None:
        validity = selected(session, *args, **kwargs)  # type: ignore[arg-type]
        if session.fresh is not None:
            session.fresh = Selected(None, session.fresh.highestmodseq)
        return validity

    monkeypatch.setattr(ImapSession, "select", without_uidnext)
    account.dovecot.deliver_many(account.user, [mail("one"), mail("two")])
    account.poll()  # its own \Seen flags change HIGHESTMODSEQ after its SELECT
    settled = account.poll()

    # When nothing changes, then when a mail arrives
    idle = account.poll()
    account.dovecot.deliver(account.user, mail("new"))
    found = account.poll()

    assert settled.refs == [] and settled.commands.searches() == ["UID SEARCH UID 3:*"]
    assert idle.refs == [] and idle.commands.searches() == []
    assert found.refs == account.refs()[2:]


# -- the watermark in the store ---------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> SqlSourceState:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    state = SqlSourceState(store, MAILBOX, SystemClock())
    state.save_cursor(Cursor("7", datetime.now(UTC)))
    state.mark_taken([(f"7:{uid}", None) for uid in range(1, 6)], "handed_off")
    return state


def stored(state: SqlSourceState) -> Cursor:
    cursor = state.cursor()
    assert cursor is not None
    return cursor


def test_letting_a_ref_go_lowers_the_watermark_below_it(state: SqlSourceState) -> None:
    raised = state.advance_watermark(stored(state), 5, 40)

    state.forget(["7:3", "8:1"])

    assert raised is not None and (raised.watermark, raised.modseq) == (5, 40)
    assert (stored(state).watermark, stored(state).modseq) == (2, None)


def test_a_round_that_read_the_cursor_before_a_ref_was_let_go_cannot_raise_it(state) -> None:
    read = stored(state)  # a round starts, then finds 7:1 to 7:5 taken

    state.forget(["7:4"])  # meanwhile a dead-letter replay lets 7:4 go

    assert state.advance_watermark(read, 5, None) is None
    assert stored(state).watermark == 0
