"""The two kinds of failure every stage raises, and configuration errors.

Adapters translate library exceptions into these (``raise InfraError(...) from exc``);
nothing above an adapter catches a library exception.
"""


class MailroomError(Exception):
    """Base of Mailroom's own errors."""


class MailError(MailroomError):
    """The mail itself is the problem (malformed, over a limit): dead-letter it, never retry."""


class InfraError(MailroomError):
    """Something outside the mail failed (store, broker, SMTP, network): retry, bounded."""


class ConfigError(MailroomError):
    """A setting is wrong; the message says which one and how to fix it."""
