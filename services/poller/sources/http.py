"""HTTP sessions for mailboxes reached over HTTPS (EWS, Graph) and their token endpoints.

A session takes the mailbox's certificate checks and proxy and ignores the environment
(``REQUESTS_CA_BUNDLE``, ``HTTPS_PROXY``): the settings file alone says where mail goes.
"""

from __future__ import annotations

import requests

from contracts.settings import MailboxSettings
from services.runtime.tls import https_verify

USER_AGENT = "Mailroom"


def http_session(box: MailboxSettings) -> requests.Session:
    """Raises ``ConfigError`` for a ``tls.ca_file`` that cannot be a CA file."""
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    session.verify = https_verify(box.tls, who=f"mailbox {box.name!r}")
    if box.proxy:
        # socks5h: the proxy resolves names, as it does for IMAP and POP.
        proxy = box.proxy.replace("socks5://", "socks5h://", 1)
        session.proxies = {"http": proxy, "https": proxy}
    return session
