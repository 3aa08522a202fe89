"""TLS contexts for mail servers, shared by the poller (IMAP, POP) and the notifier (SMTP)."""

from __future__ import annotations

import logging
import ssl

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
        return ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{who}: cannot read tls.ca_file {tls.ca_file}: {exc}; "
            "point it at a PEM file of the CA that signed the server's certificate"
        ) from exc
