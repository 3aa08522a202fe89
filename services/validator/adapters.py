"""Concrete ports of the validator: the libmagic content sniffer and the blob-head reader."""

from __future__ import annotations

import magic
import sqlalchemy as sa

from services.runtime import tables
from services.runtime.errors import InfraError
from services.runtime.store import Store

GENERIC_TYPE = "application/octet-stream"

_HEAD = sa.select(
    sa.func.substr(
        tables.blobs.c.data, 1, sa.bindparam("n", type_=sa.Integer), type_=sa.LargeBinary
    )
).where(tables.blobs.c.sha256 == sa.bindparam("sha"))


class LibmagicSniffer:
    """Tells the MIME type of some bytes from their content, with libmagic.

    Call it with the start of a file (``sniffer(data) -> "image/png"``). One libmagic handle
    is opened per instance, so build one per worker, not per mail; python-magic serialises
    calls on a handle with its own lock.

    Raises:
        InfraError: libmagic cannot load its database or fails on the data; that is the
            installation's fault, not the mail's, so the dispatcher retries.
    """

    def __init__(self) -> None:
        try:
            self._magic = magic.Magic(mime=True)
        except magic.MagicException as exc:
            raise InfraError(f"cannot open libmagic: {exc.message!r}") from exc

    def __call__(self, data: bytes) -> str:
        """Return the MIME type of ``data``, or ``application/octet-stream`` if unknown."""
        try:
            found = self._magic.from_buffer(data)
        except magic.MagicException as exc:
            raise InfraError(f"libmagic failed to identify content: {exc.message!r}") from exc
        return found or GENERIC_TYPE


class SqlBlobHeads:
    """Reads the first bytes of a blob in the store, without loading the rest into Python.

    ``heads(sha256, n)`` runs ``substr(data, 1, n)`` in the database (the same SQL on SQLite
    and PostgreSQL), so only ``n`` bytes come back however large the attachment; this is the
    validator's ``read_head`` port.

    Raises:
        KeyError: no blob has that hash.
        InfraError: the database fails (from ``Store.transaction``).
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def __call__(self, sha256: str, n: int) -> bytes:
        """Return at most the first ``n`` bytes of the blob ``sha256``."""
        with self._store.transaction() as conn:
            row = conn.execute(_HEAD, {"sha": sha256, "n": n}).first()
        if row is None:
            raise KeyError(sha256)
        return bytes(row[0])
