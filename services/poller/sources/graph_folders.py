"""Folders of a Graph mailbox: the inbox's id, and the error folder found or created.

The error folder is a child of the inbox, found by its display name (an OData string, so a
``'`` in the name is doubled) and created when missing; a 409 means another process made it
meanwhile, so it is looked up again. Ids are kept for the life of the source.
"""

from __future__ import annotations

from urllib.parse import quote

from services.poller.sources.graph_client import GraphClient
from services.poller.sources.graph_errors import GraphRefused
from services.runtime.errors import InfraError

INBOX = "inbox"  # Graph's well-known name of the inbox


def odata_string(value: str) -> str:
    """``value`` as an OData string literal: quoted, with ``'`` doubled."""
    return "'" + value.replace("'", "''") + "'"


def path_id(graph_id: str) -> str:
    """A Graph id as one path segment."""
    return quote(graph_id, safe="=")


class GraphFolders:
    def __init__(self, client: GraphClient, error_folder: str) -> None:
        self._client = client
        self.error_name = error_folder
        self._inbox: str | None = None
        self._errors: str | None = None

    def inbox(self) -> str:
        """The inbox's id (what a message's ``parentFolderId`` says)."""
        if self._inbox is None:
            found = self._client.get(f"/mailFolders/{INBOX}", "read the inbox", {"$select": "id"})
            self._inbox = str(found["id"])
        return self._inbox

    def error_folder(self, *, create: bool) -> str | None:
        """The error folder's id; None when it does not exist and ``create`` is False."""
        if self._errors is None:
            self._errors = self._find()
        if self._errors is None and create:
            self._errors = self._create()
        return self._errors

    def _find(self) -> str | None:
        params = {"$filter": f"displayName eq {odata_string(self.error_name)}", "$select": "id"}
        what = f"look up the error folder {self.error_name!r}"
        for page in self._client.pages(f"/mailFolders/{INBOX}/childFolders", what, params):
            for folder in page:
                return str(folder["id"])
        return None

    def _create(self) -> str:
        what = f"create the error folder {self.error_name!r}"
        try:
            made = self._client.send(
                "POST", f"/mailFolders/{INBOX}/childFolders", what, {"displayName": self.error_name}
            )
            return str(made["id"])
        except GraphRefused as exc:
            if exc.status != 409:
                raise
        # Made by someone else meanwhile.
        found = self._find()
        if found is None:
            raise InfraError(
                f"mailbox {self._client.box.name!r}: the error folder {self.error_name!r} "
                "exists according to Microsoft Graph, yet cannot be found in the inbox"
            )
        return found
