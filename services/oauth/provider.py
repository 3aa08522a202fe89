"""Access tokens of one mailbox from the tokens kept in the store, refreshed when due."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from contracts.settings import MailboxSettings
from services.oauth.grant import OAuthClient
from services.oauth.token_store import SqlTokenStore, StoredTokens
from services.poller.sources.imap_session import oauth_not_set_up
from services.poller.sources.tokens import ReauthorizeNeeded
from services.runtime.errors import MailroomError, Outage
from services.runtime.ports import Clock

#: A token with less left than this is refreshed first: a round must not outlive it.
REFRESH_MARGIN = timedelta(minutes=5)


class StoredTokenProvider:
    """A ``TokenProvider`` over the store: the kept access token while it has more than
    ``REFRESH_MARGIN`` left, else a refresh, whose tokens are kept (a rotated refresh token
    too). Safe to share between threads: refreshes of one mailbox take turns."""

    def __init__(
        self,
        box: MailboxSettings,
        tokens: SqlTokenStore,
        client: Callable[[], OAuthClient],
        clock: Clock,
    ) -> None:
        self._box = box
        self._tokens = tokens
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()

    def access_token(self) -> str:
        with self._lock:
            stored = self._stored()
            expires = stored.access_expires_at
            if stored.access_token and expires and expires - self._clock.now() > REFRESH_MARGIN:
                return stored.access_token
            return self._refresh(stored)

    def refreshed_token(self) -> str:
        with self._lock:
            return self._refresh(self._stored())

    def _stored(self) -> StoredTokens:
        box = self._box
        stored = self._tokens.get(box.name)
        if stored is None:
            raise oauth_not_set_up(box.name)
        if stored.account and box.username and stored.account.lower() != box.username.lower():
            # `username` was changed after consent: these tokens open another mailbox.
            raise ReauthorizeNeeded(
                f"mailbox {box.name!r}: the stored tokens were granted by {stored.account!r}, "
                f"but the mailbox logs in as {box.username!r}: re-authorize with "
                f"`mailroom oauth authorize {box.name}`"
            )
        return stored

    def _refresh(self, stored: StoredTokens) -> str:
        try:
            grant = self._client().refresh(stored.refresh_token)
        except Outage:
            raise
        except MailroomError as exc:
            self._tokens.record_failure(self._box.name, str(exc), self._clock.now())
            raise
        self._tokens.save_refresh(self._box.name, grant, self._clock.now())
        return grant.access_token

    def __repr__(self) -> str:
        return f"StoredTokenProvider({self._box.name!r})"
