"""Email debug (``debug: true``): a protocol trace with secrets redacted, and mail structure.

Everything goes to the logger ``mailroom.maildebug`` at INFO, so an admin can route it
apart from the service log. Sources use three pieces:

- ``ProtocolTrace(mailbox)``: feed it what the client sends (``sent``), the response lines
  it reads (``received``) and the size of literal data it reads (``literal``). It logs one
  line each, with LOGIN/PASS passwords and every SASL response (AUTHENTICATE/AUTH, such as
  the XOAUTH2 blob on its continuation line) replaced by ``***``.
- ``redact_line(line)``: one IMAP or POP command line as text, credentials replaced.
- ``describe_mail(raw)``: a mail's header block and MIME tree (types, file names, sizes),
  never a body.

Build a trace only when debug is on: sources must not format anything per command otherwise.
"""

from __future__ import annotations

import logging
import re

from services.runtime.mail_text import describe_mail, header_block, mime_tree

__all__ = ["REDACTED", "ProtocolTrace", "describe_mail", "header_block", "mime_tree", "redact_line"]

log = logging.getLogger("mailroom.maildebug")

REDACTED = "***"

# Group "keep" is what stays readable; whatever follows it on the line is a secret.
_SECRET_ARGUMENTS = [
    # IMAP: tag LOGIN user password (the user may be a quoted string with spaces)
    re.compile(rb'^(?P<keep>\S+ LOGIN (?:"(?:[^"\\]|\\.)*"|\S+)) .*$', re.I | re.S),
    # IMAP: tag AUTHENTICATE mechanism initial-response (SASL-IR)
    re.compile(rb"^(?P<keep>\S+ AUTHENTICATE \S+) .*$", re.I | re.S),
    # POP: PASS password / APOP user digest / AUTH mechanism initial-response
    re.compile(rb"^(?P<keep>PASS) .*$", re.I | re.S),
    re.compile(rb"^(?P<keep>APOP \S+) .*$", re.I | re.S),
    re.compile(rb"^(?P<keep>AUTH \S+) .*$", re.I | re.S),
]
# After these the client answers server challenges with bare SASL responses until the server
# sends something other than a continuation ("+ ...").
_SASL_START = re.compile(rb"^(?:\S+ AUTHENTICATE|AUTH) \S+", re.I)


def redact_line(line: bytes) -> str:
    """One command line as text, without its line end, with any credential replaced.

    Covers IMAP ``LOGIN`` and ``AUTHENTICATE`` and POP ``PASS``, ``APOP`` and ``AUTH``.
    A bare SASL response line cannot be recognised alone: ``ProtocolTrace`` redacts those.
    """
    line = line.rstrip(b"\r\n")
    for pattern in _SECRET_ARGUMENTS:
        match = pattern.match(line)
        if match:
            return f"{_text(match.group('keep'))} {REDACTED}"
    return _text(line)


def starts_sasl(line: bytes) -> bool:
    """True for a command that begins a SASL exchange (IMAP AUTHENTICATE, POP AUTH MECH)."""
    return bool(_SASL_START.match(line))


def is_continuation(line: bytes) -> bool:
    """True for a server line that asks the client for more ("+ ..."; not POP's "+OK")."""
    return line.startswith(b"+ ") or line.rstrip(b"\r\n") == b"+"


class ProtocolTrace:
    """Logs one session's protocol lines to ``mailroom.maildebug``, secrets redacted.

    Example (a client wrapper calls these from its send/readline/read)::

        trace = ProtocolTrace("support")
        trace.sent(b"a1 LOGIN help secret\\r\\n")     # > a1 LOGIN help ***
        trace.received(b"a1 OK Logged in\\r\\n")      # < a1 OK Logged in
        trace.literal(2048)                          # < (2048 bytes of literal data)

    Never raises. Do not feed it message content (POP ``RETR`` lines): only the status line.
    """

    def __init__(self, mailbox: str) -> None:
        self.mailbox = mailbox
        self._in_sasl = False

    def sent(self, data: bytes) -> None:
        """Log what the client sends; ``data`` may be a line, a bare CRLF, or a SASL response."""
        for line in data.splitlines():
            if not line:
                continue
            if self._in_sasl:
                self._log(">", REDACTED)
                continue
            self._log(">", redact_line(line))
            self._in_sasl = starts_sasl(line)

    def received(self, line: bytes) -> None:
        """Log one response line; a line that is not a continuation ends a SASL exchange."""
        self._in_sasl = self._in_sasl and is_continuation(line)
        self._log("<", _text(line.rstrip(b"\r\n")))

    def literal(self, size: int) -> None:
        """Log that ``size`` bytes of literal data (mail content) were read, not the data."""
        self._log("<", f"({size} bytes of literal data)")

    def note(self, text: str) -> None:
        """Log a line of context (connecting, TLS started, a mail's structure)."""
        self._log("*", text)

    def _log(self, direction: str, text: str) -> None:
        log.info("mailbox=%s %s %s", self.mailbox, direction, text)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
