"""The kinds of failure every stage raises, and configuration errors.

Adapters translate library exceptions into these (``raise InfraError(...) from exc``);
nothing above an adapter catches a library exception.
"""


class MailroomError(Exception):
    """Base of Mailroom's own errors."""


class MailError(MailroomError):
    """The mail itself is the problem (malformed, over a limit): dead-letter it, never retry."""


class InfraError(MailroomError):
    """Something outside the mail failed (store, broker, SMTP, network): retry, bounded."""


class Outage(InfraError):
    """The pipeline's own broker or store cannot be reached: no mail's fault.

    A worker waits it out (backs off, reconnects, handles the same mail again) and counts
    the attempt against no mail. ``what`` names the part that is down ("broker", "store").
    """

    what = "infrastructure"


class BrokerOutage(Outage):
    """The broker cannot be reached, or did not confirm a publish."""

    what = "broker"


class StoreOutage(Outage):
    """The database cannot be reached, or dropped the connection in the middle of a query."""

    what = "store"


def retried_in_place(exc: BaseException) -> bool:
    """A refused write is tried again a few times; an outage is the worker's to wait out."""
    return isinstance(exc, InfraError) and not isinstance(exc, Outage)


class ConfigError(MailroomError):
    """A setting is wrong; the message says which one and how to fix it."""
