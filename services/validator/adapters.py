"""Concrete ports of the validator: the libmagic content sniffer."""

from __future__ import annotations

import magic

from services.runtime.errors import InfraError

GENERIC_TYPE = "application/octet-stream"


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
