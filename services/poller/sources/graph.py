"""Microsoft 365 mailboxes through Microsoft Graph (``protocol: graph``), on plain requests.

A mail's ref is its Graph id, immutable (``Prefer: IdType="ImmutableId"``): it stays the
same when the mail moves to the error folder and back. The server's read flag is the state:
unread inbox mail is new, and ``mark_handed_off`` marks it read. Nothing is kept in the
store, so ``import_existing`` cannot tell old mail from new: every setting reads unread mail.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from contracts.settings import MailboxSettings
from services.poller.sources.base import Fetched, NotMarked, SourceState
from services.poller.sources.debug import describe_mail
from services.poller.sources.graph_client import GraphClient
from services.poller.sources.graph_errors import GraphRefused
from services.poller.sources.graph_folders import INBOX, GraphFolders, path_id
from services.poller.sources.imap_session import oauth_not_set_up
from services.poller.sources.needs import SourceNeeds
from services.runtime.errors import ConfigError, InfraError
from services.runtime.message_ids import first_message_id

MB = 1024 * 1024
#: Mails per listing page ($top; Graph allows 1..1000).
PAGE_SIZE = 100
#: Unread inbox mail, oldest first. Graph refuses (400 InefficientFilter) an $orderby whose
#: properties do not lead the $filter in the same order: the always-true date clause is there
#: for that rule.
UNREAD_OLDEST_FIRST = {
    "$filter": "receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false",
    "$orderby": "receivedDateTime asc",
}


class GraphSource:
    """One mailbox's inbox and error folder on Graph; see the module docstring.

    Every method raises ``ConfigError`` for a setting to fix, ``InfraError`` for a failure
    that may pass, and ``Throttled`` when Graph asks to wait longer than a round does.
    """

    supports_error_folder = True

    def __init__(
        self, box: MailboxSettings, client: GraphClient, *, page_size: int = PAGE_SIZE
    ) -> None:
        self._box = box
        self._client = client
        self._page_size = max(1, min(page_size, 1000))
        self._folders = GraphFolders(client, box.error_folder.name)
        #: Mails the last listing found in the inbox and this source has not moved since:
        #: fetched without asking where they are (a request per mail saved).
        self._listed: set[str] = set()

    # -- MailSource ------------------------------------------------------------------------

    def list_new(self, limit: int) -> list[str]:
        """Ids of unread inbox mail, oldest first, at most ``limit``."""
        refs = [str(m["id"]) for m in self._unread(limit)]
        self._listed = set(refs)
        return refs

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        """The mails' MIME bytes (``$value``; reading does not mark). Mails no longer in the
        inbox are left out; one over ``max_mail_mb`` comes back with ``raw=None``."""
        for ref in refs:
            if ref not in self._listed and self._where(ref) != self._folders.inbox():
                continue
            fetched = self._fetch(ref)
            if fetched is not None:
                yield fetched

    def fetch_raw(self, ref: str) -> bytes:
        """One mail's bytes. Raises ``InfraError`` when it is no longer in the inbox, and
        ``ConfigError`` when it is over ``max_mail_mb``."""
        for item in self.fetch_many([ref]):
            if item.raw is None:
                raise ConfigError(f"mailbox {self._box.name!r}: mail {ref}: {item.skipped}")
            return item.raw
        raise InfraError(f"mailbox {self._box.name!r}: mail {ref} is no longer in the inbox")

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Mark the mails read. Mails Graph no longer has are skipped; ``NotMarked`` names
        those it refused to mark, after marking the rest."""
        refused: dict[str, str] = {}
        for ref in refs:
            try:
                self._set_read(ref, True)
            except GraphRefused as exc:
                if not _gone(exc):
                    refused[ref] = str(exc)
        if refused:
            raise NotMarked(refused)

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        """Move inbox mails into the error folder, creating it when missing. A mail already
        there counts as moved; one gone or in another folder is an ``InfraError``."""
        target = self._folders.error_folder(create=True)
        assert target is not None  # created when missing
        inbox, failures = self._folders.inbox(), {}
        for ref in refs:
            self._listed.discard(ref)
            where = self._where(ref)
            if where == target:
                continue
            if where != inbox:
                failures[ref] = "it is no longer in the inbox (deleted or moved meanwhile)"
                continue
            try:
                self._move(ref, target)
            except GraphRefused as exc:
                failures[ref] = str(exc)
        if failures:
            detail = "; ".join(f"{ref}: {why}" for ref, why in failures.items())
            raise InfraError(
                f"mailbox {self._box.name!r}: not moved to the error folder "
                f"{self._folders.error_name!r}: {detail}"
            )

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        """Move mails from the error folder back to the inbox, unread, to be fetched again.
        Refs not in the error folder are skipped."""
        errors = self._folders.error_folder(create=False)
        if errors is None:
            return
        for ref in refs:
            if self._where(ref) != errors:
                continue
            # Unread first: a crash between the two leaves an unread mail in the error
            # folder (harmless), never a read one in the inbox (never fetched again).
            self._set_read(ref, False)
            self._move(ref, INBOX)

    def error_folder_refs(self) -> list[str]:
        return sorted(self._error_folder_mail("id"))

    def error_folder_message_ids(self) -> dict[str, str | None]:
        found = self._error_folder_mail("id,internetMessageId")
        return {
            ref: first_message_id(str(m.get("internetMessageId") or ""))
            for ref, m in sorted(found.items())
        }

    def fetch_oldest_unmarked(self) -> bytes | None:
        """The oldest unread inbox mail, left unread. Raises ``ConfigError`` when it is over
        ``max_mail_mb``."""
        oldest = self._unread(1)
        if not oldest:
            return None
        ref = str(oldest[0]["id"])
        fetched = self._fetch(ref)
        if fetched is None:
            return None  # moved or deleted meanwhile
        if fetched.raw is None:
            raise ConfigError(
                f"mailbox {self._box.name!r}: the oldest new mail, {ref}, is not shown: "
                f"{fetched.skipped}"
            )
        return fetched.raw

    def close(self) -> None:
        self._client.close()

    # -- requests --------------------------------------------------------------------------

    def _unread(self, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        params = UNREAD_OLDEST_FIRST | {
            "$top": str(min(limit, self._page_size)),
            "$select": "id,receivedDateTime,isRead",
        }
        found: list[dict[str, Any]] = []
        path = f"/mailFolders/{INBOX}/messages"
        for page in self._client.pages(path, "list unread inbox mail", params):
            found += [m for m in page if m.get("isRead") is False]
            if len(found) >= limit:
                break
        return found[:limit]

    def _error_folder_mail(self, select: str) -> dict[str, dict[str, Any]]:
        folder = self._folders.error_folder(create=False)
        if folder is None:
            return {}
        params = {"$select": select, "$top": str(self._page_size)}
        path = f"/mailFolders/{path_id(folder)}/messages"
        what = f"list the error folder {self._folders.error_name!r}"
        return {str(m["id"]): m for page in self._client.pages(path, what, params) for m in page}

    def _where(self, ref: str) -> str | None:
        """The id of the folder that holds mail ``ref``; None when Graph has no such mail."""
        try:
            found = self._client.get(
                f"/messages/{path_id(ref)}", f"locate mail {ref}", {"$select": "parentFolderId"}
            )
        except GraphRefused as exc:
            if _gone(exc):
                return None
            raise
        return str(found.get("parentFolderId"))

    def _fetch(self, ref: str) -> Fetched | None:
        """The mail's bytes; None when it is gone."""
        limit = int(self._box.max_mail_mb * MB)
        try:
            path = f"/messages/{path_id(ref)}/$value"
            got = self._client.download(path, f"download mail {ref}", limit)
        except GraphRefused as exc:
            if _gone(exc):
                return None
            raise
        if isinstance(got, int):
            return Fetched(ref, None, skipped=self._too_large(got))
        if self._client.trace is not None:
            self._client.trace.note(f"mail {ref}, {len(got)} bytes:\n{describe_mail(got)}")
        return Fetched(ref, got)

    def _set_read(self, ref: str, read: bool) -> None:
        self._client.send(
            "PATCH", f"/messages/{path_id(ref)}", f"mark mail {ref} read={read}", {"isRead": read}
        )

    def _move(self, ref: str, destination: str) -> None:
        body = {"destinationId": destination}
        self._client.send("POST", f"/messages/{path_id(ref)}/move", f"move mail {ref}", body)

    def _too_large(self, size: int) -> str:
        return (
            f"the mail is over this mailbox's limit of {self._box.max_mail_mb:g} MB "
            f"(max_mail_mb): {size / MB:.1f} MB or more"
        )


def open_graph(
    box: MailboxSettings,
    state: SourceState,
    needs: SourceNeeds,
) -> GraphSource:
    """The ``SOURCES`` factory for ``graph``; nothing is sent before the first call.

    ``state`` is not used: Graph's read flag is the state. Raises ``ConfigError`` without
    ``username`` or a token provider (``mailroom oauth authorize NAME`` sets one up).
    """
    if not box.username:
        raise ConfigError(
            f"mailbox {box.name!r}: protocol graph needs `username`: the mailbox's address"
        )
    if needs.tokens is None:
        raise oauth_not_set_up(box.name)
    client = GraphClient(box, needs.http(box), needs.tokens, trace=needs.trace, sleep=needs.sleep)
    return GraphSource(box, client)


def _gone(exc: GraphRefused) -> bool:
    """Graph has no such mail: 404, or 400 for an id that cannot be one."""
    return exc.status == 404 or exc.code == "ErrorInvalidIdMalformed"
