"""TLS contexts for mail servers, shared by the poller (IMAP, POP) and the notifier (SMTP)."""

from __future__ import annotations

import logging
import os
import ssl
import stat

from contracts.file_kinds import file_kind
from contracts.settings import TlsSettings
from services.runtime.errors import ConfigError

log = logging.getLogger(__name__)


def tls_context(tls: TlsSettings, *, who: str) -> ssl.SSLContext:
    """Verify against the system store or ``ca_file``; ``verify: false`` is explicit and loud.

    ``who`` names the setting's owner in messages, e.g. "mailbox 'support'".
    """
    if not tls.verify:
        log.warning(
            "%s: TLS certificate verification is OFF (tls.verify: false); "
            "the connection can be intercepted",
            who,
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        if tls.ca_file is not None:
            _require_pem_file(tls.ca_file, who=who)
        return ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{who}: cannot read tls.ca_file {tls.ca_file}: {exc}; "
            "point it at a PEM file of the CA that signed the server's certificate"
        ) from exc


#: Far more than a CA bundle takes (the system's is about 200 KB).
MAX_CA_FILE_BYTES = 16 * 1024 * 1024


def _require_pem_file(path: str, *, who: str) -> None:
    """OpenSSL reads ``ca_file`` to its end: a named pipe would wait and a device never
    end, holding up every connection of the mailbox. Only a file of bounded size is read."""
    info = os.stat(path)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"is {file_kind(info.st_mode)}, not a file"
    elif info.st_size > MAX_CA_FILE_BYTES:
        problem = f"is {info.st_size // (1024 * 1024)} MiB, more than any CA file"
    if problem is not None:
        raise ConfigError(
            f"{who}: tls.ca_file {path} {problem}: point it at a PEM file of the CA that "
            "signed the server's certificate"
        )


def https_verify(tls: TlsSettings, *, who: str) -> bool | str:
    """What ``requests`` takes as ``verify`` for these settings: False (loudly), a checked
    ``ca_file``, or True for the system store."""
    if not tls.verify:
        log.warning(
            "%s: TLS certificate verification is OFF (tls.verify: false); "
            "the connection can be intercepted",
            who,
        )
        return False
    if tls.ca_file is None:
        return True
    try:
        _require_pem_file(tls.ca_file, who=who)
    except OSError as exc:
        raise ConfigError(
            f"{who}: cannot read tls.ca_file {tls.ca_file}: {exc}; "
            "point it at a PEM file of the CA that signed the server's certificate"
        ) from exc
    return tls.ca_file
