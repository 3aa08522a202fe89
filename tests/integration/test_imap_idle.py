"""Push delivery (``idle: true``) against a real Dovecot, through a relay that can fail.

The poller's tick runs on a thread here as the worker runs it; mail goes in over IMAP
APPEND as it does for mail delivered while Mailroom waits. The fetch interval is ten
minutes, so mail fetched within the test came by IDLE.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from faults import Fault, FaultyRelay, passthrough
from mailservers import Dovecot

from contracts.settings import Settings, parse_settings
from services.poller.worker import Poller
from services.runtime.bus import connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore
from services.runtime.stage import secret_box
from services.runtime.store import Store
from services.runtime.unfinished import unfinished_mails

pytestmark = pytest.mark.infra

#: Well within the ten-minute interval: anything fetched before this came by IDLE.
WITHIN_S = 60.0
IN_IDLE = "waiting in IDLE"


def mail() -> bytes:
    return (
        "From: customer@example.org\r\nTo: help@example.test\r\nSubject: hi\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\nhello\r\n"
    ).encode()


def wait_until(what: Callable[[], object], timeout: float = WITHIN_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.05)
    return False


def said(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


class Running:
    """A poller on one ``idle: true`` IMAP mailbox behind a relay, ticking on a thread."""

    def __init__(
        self,
        settings: Settings,
        dovecot: Dovecot,
        *,
        fault: Fault = passthrough,
        fetch_every_minutes: float = 10,
        renewal: timedelta = timedelta(minutes=29),
    ) -> None:
        self.dovecot = dovecot
        self.user, password = f"u{uuid.uuid4().hex[:10]}@example.test", uuid.uuid4().hex
        dovecot.add_user(self.user, password)
        self.relay = FaultyRelay(dovecot.imap_port, fault)
        box = {
            "name": "support",
            "protocol": "imap",
            "host": "127.0.0.1",
            "port": self.relay.port,
            "username": self.user,
            "password": password,
            "idle": True,
            "fetch_every_minutes": fetch_every_minutes,
            "import_existing": "all",
        }
        self.store = Store(settings.effective_database_url)
        self.store.migrate()
        text = json.dumps({"helpdesks": [{"id": "default", "mailboxes": [box]}]})
        ConfigStore(self.store, secret_box(settings)).apply(parse_settings(text, env={}))
        self.poller = Poller(
            settings,
            connection=connect("memory://"),
            store=self.store,
            clock=SystemClock(),
            idle_renewal=renewal,
        )
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            self.poller.poll_due()

    def handed_off(self) -> int:
        return len(unfinished_mails(self.store))

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join()
        self.poller.close()
        self.relay.close()


@pytest.fixture
def running(settings: Settings, dovecot: Dovecot) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def start(**options: object) -> Running:
        made.append(Running(settings, dovecot, **options))  # type: ignore[arg-type]
        return made[-1]

    yield start
    for r in made:
        r.stop()


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="services.poller")
    return caplog


def test_mail_delivered_is_fetched_long_before_the_interval(running, caplog) -> None:
    r = running()
    assert wait_until(lambda: said(caplog, IN_IDLE)), caplog.text

    r.dovecot.deliver(r.user, mail())

    assert wait_until(lambda: r.handed_off() == 1), "the mail waited for the poll interval"


def test_without_idle_on_the_server_polling_goes_on_and_a_warning_says_so_once(
    running, caplog
) -> None:
    no_idle: Fault = lambda _sent, chunk: chunk.replace(b" IDLE", b"")  # noqa: E731
    r = running(fault=no_idle, fetch_every_minutes=0.02)  # polled every 1.2 s
    r.dovecot.deliver(r.user, mail())
    assert wait_until(lambda: r.handed_off() == 1)

    r.dovecot.deliver(r.user, mail())
    assert wait_until(lambda: r.handed_off() == 2)

    assert said(caplog, "does not offer IMAP IDLE") == 1
    assert said(caplog, IN_IDLE) == 0
    warning = next(rec for rec in caplog.records if "does not offer IMAP IDLE" in rec.getMessage())
    assert warning.levelno == logging.WARNING
    assert "every 0.02 minutes" in warning.getMessage()


def test_a_dropped_idle_connection_is_opened_again_and_mail_still_comes(running, caplog) -> None:
    r = running()
    assert wait_until(lambda: said(caplog, IN_IDLE) == 1)

    r.relay.cut_all()

    assert wait_until(lambda: said(caplog, IN_IDLE) == 2), caplog.text
    assert said(caplog, "IDLE connection lost") == 1
    r.dovecot.deliver(r.user, mail())
    assert wait_until(lambda: r.handed_off() == 1), "the mail waited for the poll interval"
    # The drop counts nothing against the mailbox.
    assert said(caplog, "poll failed") == 0
    assert (
        ConfigStore(r.store, secret_box(r.poller._ctx.settings)).mailboxes()[0].consecutive_failures
        == 0
    )


def test_idle_is_renewed_on_the_same_connection(running, caplog) -> None:
    idling = []

    def count(_sent: int, chunk: bytes) -> bytes:
        idling.extend([1] * chunk.count(b"+ idling"))
        return chunk

    r = running(fault=count, renewal=timedelta(seconds=1))
    assert wait_until(lambda: len(idling) >= 3), idling

    assert said(caplog, IN_IDLE) == 1  # entered once, renewed since
    r.dovecot.deliver(r.user, mail())
    assert wait_until(lambda: r.handed_off() == 1)
    assert said(caplog, "IDLE connection lost") == 0


def test_a_stop_ends_the_watcher(running, caplog) -> None:
    r = running()
    assert wait_until(lambda: said(caplog, IN_IDLE))
    assert any(t.name == "idle-support" for t in threading.enumerate())

    r.stop()

    assert not any(t.name == "idle-support" for t in threading.enumerate())
    assert said(caplog, "IDLE connection lost") == 0  # a stop is no failure
