"""The poller and OAuth mailboxes: a warning before a refresh token lapses, once per date."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from kombu import Connection

from contracts import queues
from contracts.settings import Settings, parse_settings
from services.oauth.grant import Grant
from services.oauth.token_store import SqlTokenStore
from services.poller.worker import Poller
from services.runtime.bus import connect, declare_all
from services.runtime.config_store import ConfigStore
from services.runtime.stage import secret_box
from services.runtime.store import Store
from services.runtime.testing import FakeClock

SETTINGS = """
helpdesks:
  - id: desk
    notifications: {{admins: [admin@example.test], support_reps: [reps@example.test]}}
    mailboxes:
      - name: cloud
        protocol: imaps
        host: outlook.office365.com
        username: help@example.test
        auth: oauth
        client_id: mailroom
        token_url: https://login.microsoftonline.com/contoso/oauth2/v2.0/token
        enabled: false
      - {{name: local, protocol: maildir, path: {path}}}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(settings: Settings, tmp_path: Path, clock: FakeClock) -> Store:
    store = Store(settings.effective_database_url)
    store.migrate()
    parsed = parse_settings(SETTINGS.format(path=tmp_path / "maildir"))
    ConfigStore(store, secret_box(settings)).apply(parsed)
    grant = Grant("at-1", clock.now() + timedelta(hours=1), "rt-1")
    SqlTokenStore(store, secret_box(settings)).save_consent(
        "cloud", grant, "help@example.test", clock.now()
    )
    return store


@pytest.fixture
def connection() -> Iterator[Connection]:
    conn = connect("memory://")
    declare_all(conn)  # as the notifier does before it reads
    yield conn
    conn.release()


@pytest.fixture
def poller(settings: Settings, store: Store, clock: FakeClock, connection: Connection) -> Poller:
    return Poller(settings, connection=connection, store=store, clock=clock)


def lapse_notices(connection: Connection) -> list[dict[str, object]]:
    found = []
    with connection.channel() as channel:
        while (message := channel.basic_get(queues.NOTIFY, no_ack=True)) is not None:
            notice = json.loads(message.body)
            if notice["topic"] == "oauth_lapsing":
                found.append(notice)
    return found


def test_admins_are_warned_once_before_an_unused_refresh_token_lapses(
    poller: Poller, clock: FakeClock, connection: Connection
) -> None:
    consent = clock.now()
    clock.advance(days=75)  # 15 days left: not yet
    poller.warn_of_lapsing_tokens()
    early = lapse_notices(connection)
    clock.advance(days=2)
    poller.warn_of_lapsing_tokens()
    warned = lapse_notices(connection)
    clock.advance(days=1)
    poller.warn_of_lapsing_tokens()
    again = lapse_notices(connection)

    assert early == []
    assert [(n["channel"], n["to"]) for n in warned] == [("bell", ["admin@example.test"])]
    lapse = consent + timedelta(days=90)
    assert f"lapses on {lapse:%Y-%m-%d}" in str(warned[0]["subject"])
    assert "`mailroom oauth authorize cloud`" in str(warned[0]["body"])
    assert again == [], "one warning per lapse date"


def test_a_refresh_moves_the_lapse_date_and_a_new_date_is_warned_about_again(
    poller: Poller, clock: FakeClock, connection: Connection, store: Store, settings: Settings
) -> None:
    tokens = SqlTokenStore(store, secret_box(settings))
    clock.advance(days=80)
    poller.warn_of_lapsing_tokens()
    first = lapse_notices(connection)
    renewed = Grant("at-2", clock.now() + timedelta(hours=1), None)
    tokens.save_refresh("cloud", renewed, clock.now())
    clock.advance(days=78)
    poller.warn_of_lapsing_tokens()
    second = lapse_notices(connection)

    assert len(first) == 1 and len(second) == 1
    assert first[0]["subject"] != second[0]["subject"]


def test_a_help_desk_chooses_how_many_days_ahead_its_admins_are_warned(
    settings: Settings, store: Store, clock: FakeClock, connection: Connection, tmp_path: Path
) -> None:
    longer = SETTINGS.replace(
        "support_reps: [reps@example.test]}}",
        "support_reps: [reps@example.test], token_lapse_warning_days: 30}}",
    )
    ConfigStore(store, secret_box(settings)).apply(
        parse_settings(longer.format(path=tmp_path / "maildir"))
    )
    poller = Poller(settings, connection=connection, store=store, clock=clock)
    clock.advance(days=59)  # 31 days left
    poller.warn_of_lapsing_tokens()
    early = lapse_notices(connection)
    clock.advance(days=2)  # 29 days left
    poller.warn_of_lapsing_tokens()

    assert early == []
    assert len(lapse_notices(connection)) == 1
