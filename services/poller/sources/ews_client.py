"""One mailbox's exchangelib ``Account``, and the rules every EWS operation runs under.

``EwsClient.run(what, operation)`` connects on first use, waits out short throttling
answers, asks for a new OAuth token once after a refusal, and turns whatever exchangelib
raises into ``ConfigError``, ``InfraError`` or ``Throttled``. An operation may run more than
once, so each must be safe to repeat (list, read, mark, move).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from exchangelib import Account

from contracts.settings import MailboxSettings
from services.poller.sources.base import Throttled
from services.poller.sources.debug import ProtocolTrace
from services.poller.sources.ews_errors import busy_of, explain, is_refusal, refused
from services.poller.sources.ews_protocol import (
    BasicCredentials,
    TokenCredentials,
    connect,
    forget_protocol,
)
from services.poller.sources.needs import SourceNeeds
from services.runtime.errors import ConfigError, MailroomError

T = TypeVar("T")

#: The longest wait for one throttling answer; a server asking more ends the round.
MAX_WAIT_SECONDS = 30.0
#: Throttling answers in a row after which one call gives up (the round ends).
MAX_BUSY_ANSWERS = 3


class EwsClient:
    def __init__(self, box: MailboxSettings, needs: SourceNeeds) -> None:
        """Waits a busy server asks for go through ``needs.sleep``."""
        _require_credentials(box, needs)
        self.box = box
        self.trace: ProtocolTrace | None = needs.trace
        self._needs = needs
        self._sleep = needs.sleep
        self._account: Account | None = None
        self._credentials: BasicCredentials | TokenCredentials | None = None

    def run(self, what: str, operation: Callable[[Account], T]) -> T:
        """``operation(account)``, under the rules in the module docstring. ``what`` says
        what it does, for messages ("listing the inbox")."""
        busy_answers = 0
        refreshed = False
        while True:
            try:
                account = self._connected()
                if isinstance(self._credentials, TokenCredentials) and not refreshed:
                    self._credentials.load()
                return operation(account)
            except MailroomError:
                raise
            except Exception as exc:
                busy = busy_of(exc)
                if busy is not None:
                    busy_answers += 1
                    self._wait_or_give_up(busy.retry_after, busy_answers, what)
                    continue
                if is_refusal(exc) and isinstance(self._credentials, TokenCredentials):
                    if refreshed:
                        raise refused(self.box) from exc
                    refreshed = True
                    self._credentials.refresh()
                    continue
                error = explain(exc, self.box, what)
                self._note(f"{what}: {error}")
                raise error from exc

    def _wait_or_give_up(self, retry_after: float | None, answers: int, what: str) -> None:
        if retry_after is None or retry_after > MAX_WAIT_SECONDS or answers >= MAX_BUSY_ANSWERS:
            asked = (
                f"for {retry_after:g} s" if retry_after is not None else "without saying how long"
            )
            self._note(f"{what}: server busy, asked to wait {asked}; giving up this round")
            raise Throttled(
                f"mailbox {self.box.name!r}: the Exchange server asked to slow down {asked} "
                f"while {what} ({answers} busy answers); will try again next round",
                retry_after=retry_after,
            )
        self._note(f"{what}: server busy, waiting {retry_after:g} s")
        self._sleep(retry_after)

    def close(self) -> None:
        """Close the sessions and drop the protocol from exchangelib's cache; never raises."""
        account, self._account = self._account, None
        if account is not None:
            try:
                forget_protocol(account.protocol.config)
            except Exception:  # closing must not fail
                pass

    def _connected(self) -> Account:
        if self._account is None:
            box = self.box
            tokens = self._needs.tokens
            if box.auth == "oauth" and tokens is not None:
                self._credentials = TokenCredentials(tokens)
            else:
                self._credentials = BasicCredentials(box.username or "", box.password or "")
            self._account = connect(
                box,
                self._credentials,
                http=self._needs.http,
                trace=self.trace,
                now=self._now,
            )
        return self._account

    def _now(self) -> datetime:
        return self._needs.clock.now()

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.note(text)


def _require_credentials(box: MailboxSettings, needs: SourceNeeds) -> None:
    name = box.name
    if not box.connect_url:
        raise ConfigError(f"mailbox {name!r}: protocol ews needs `connect_url`")
    if not box.username or "@" not in box.username:
        raise ConfigError(
            f"mailbox {name!r}: protocol ews needs `username` set to the mailbox's SMTP address"
        )
    if box.auth == "oauth" and needs.tokens is None:
        raise ConfigError(
            f"mailbox {name!r}: OAuth is not set up for this mailbox: "
            f"run `mailroom oauth authorize {name}`"
        )
    if box.auth == "basic" and box.password is None:
        raise ConfigError(f"mailbox {name!r}: protocol ews with auth basic needs `password`")
