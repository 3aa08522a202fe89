"""The protocol registry: every protocol a settings file may name opens, says what it
offers, and gets what it depends on from the opener."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from contracts.settings import MailboxSettings, Protocol
from services.poller import sources
from services.poller.opener import MailboxOpener
from services.poller.sources import SOURCES, SourceKind, SourceNeeds, capabilities
from services.poller.sources.tokens import StaticTokenProvider
from services.runtime.clock import SystemClock


def test_every_protocol_of_the_settings_file_has_a_source():
    assert set(typing.get_args(Protocol)) == set(SOURCES)


@pytest.mark.parametrize("protocol", ["pop", "pops"])
def test_pop_deletes_after_hand_off_and_has_no_error_folder(protocol):
    offers = capabilities(protocol)

    assert not offers.error_folder and offers.deletes_after_hand_off and not offers.marks_seen


@pytest.mark.parametrize("protocol", ["maildir", "imap", "imaps", "ews", "graph"])
def test_folder_protocols_mark_mail_seen_and_keep_an_error_folder(protocol):
    offers = capabilities(protocol)

    assert offers.error_folder and offers.marks_seen and not offers.deletes_after_hand_off


class Recorder:
    """A factory that records what it was given."""

    def __init__(self) -> None:
        self.needs: SourceNeeds | None = None

    def __call__(self, box, state, needs):  # type: ignore[no-untyped-def]
        self.needs = needs
        return object()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    kind = SourceKind(recorder, capabilities("imaps"))
    monkeypatch.setitem(sources.SOURCES, "imaps", kind)
    return recorder


def imaps(**fields: object) -> MailboxSettings:
    base: dict[str, object] = {
        "name": "support",
        "protocol": "imaps",
        "host": "mail.example.com",
        "username": "support@example.com",
        "password": "pw",
    }
    return MailboxSettings.model_validate(base | fields)


def test_an_oauth_mailbox_gets_its_token_provider_and_a_basic_one_none(recorded: Recorder):
    asked: list[str] = []

    def tokens_for(box: MailboxSettings) -> StaticTokenProvider:
        asked.append(box.name)
        return StaticTokenProvider("t")

    opener = MailboxOpener(SystemClock(), tokens_for)
    oauth = imaps(
        name="o",
        auth="oauth",
        password=None,
        client_id="app",
        token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
    )

    opener.open(imaps(), None)  # type: ignore[arg-type]
    assert recorded.needs is not None and recorded.needs.tokens is None
    opener.open(oauth, None)  # type: ignore[arg-type]
    assert isinstance(recorded.needs.tokens, StaticTokenProvider)
    assert asked == ["o"]


def test_email_debug_gives_the_source_a_protocol_trace(recorded: Recorder):
    opener = MailboxOpener(SystemClock(), lambda box: None)

    opener.open(imaps(), None)  # type: ignore[arg-type]
    assert recorded.needs is not None and recorded.needs.trace is None
    opener.open(imaps(debug=True), None)  # type: ignore[arg-type]
    assert recorded.needs.trace is not None and recorded.needs.trace.mailbox == "support"


def test_a_maildir_opens_through_the_registry(tmp_path: Path):
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    box = MailboxSettings(name="local", protocol="maildir", path=str(tmp_path))

    source = sources.open_source(box, state=None)  # type: ignore[arg-type]

    assert source.list_new(10) == []
