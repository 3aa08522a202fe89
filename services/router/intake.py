"""Who may open a new request by mail. Replies to existing requests are always accepted."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.mail import Address, ParsedMail
from services.router.addresses import ascii_domain, normalised


@dataclass(frozen=True)
class IntakePolicy:
    """A mailbox's ``new_requests`` setting.

    With ``enabled`` off, only senders on ``allow`` open requests: an address
    (``heather@zylker.com``) or every address of a domain (``*@zylker.com``), compared as
    ``addresses.normalised`` does (case, IDNA).
    """

    enabled: bool = True
    allow: tuple[str, ...] = ()

    def admits(self, email: str) -> bool:
        if self.enabled:
            return True
        address = normalised(email)
        domain = address.rpartition("@")[2]
        return any(_matches(entry.strip(), address, domain) for entry in self.allow)


def _matches(entry: str, address: str, domain: str) -> bool:
    if entry.startswith("*@"):
        return domain == ascii_domain(entry[2:])
    return address == normalised(entry)


def refusal(mail: ParsedMail, sender: Address | None, intake: IntakePolicy) -> str:
    """Why ``mail``, which joins no request, may not open one; "" when it may."""
    if mail.auto_reply:
        return "an automatic reply does not open a new request"
    if intake.enabled:
        return ""
    if sender is None:
        return (
            "new requests by mail are disabled except for the allowlist, and the mail has no "
            "sender address (From, Sender or Reply-To) to check against it"
        )
    if not intake.admits(sender.email):
        return f"new requests by mail are disabled and {sender.email} is not on the allowlist"
    return ""
