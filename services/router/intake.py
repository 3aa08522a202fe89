"""Who may open a new request by mail. Replies to existing requests are always accepted."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.mail import Address, ParsedMail
from services.runtime.addresses import ascii_domain, normalised_address


@dataclass(frozen=True)
class IntakePolicy:
    """A mailbox's ``new_requests`` setting.

    With ``enabled`` off, only senders on ``allow`` open requests: an address
    (``heather@zylker.com``) or every address of a domain (``*@zylker.com``), compared as
    ``services.runtime.addresses`` does (case, IDNA, trailing dot).
    """

    enabled: bool = True
    allow: tuple[str, ...] = ()

    def admits(self, email: str) -> bool:
        if self.enabled:
            return True
        address = normalised_address(email)
        domain = address.rpartition("@")[2]
        return any(_matches(entry.strip(), address, domain) for entry in self.allow)


def _matches(entry: str, address: str, domain: str) -> bool:
    if entry.startswith("*@"):
        return domain == ascii_domain(entry[2:])
    return address == normalised_address(entry)


def refusal_rule(mail: ParsedMail, sender: Address | None, intake: IntakePolicy) -> tuple[str, str]:
    """``(rule, reason)``: the rule that keeps ``mail`` from opening a request
    (``auto_reply`` or ``allowlist``) and why; ``("", "")`` when it may open one."""
    if mail.auto_reply:
        return "auto_reply", "an automatic reply does not open a new request"
    if intake.enabled:
        return "", ""
    if sender is None:
        return "allowlist", (
            "new requests by mail are disabled except for the allowlist, and the mail has no "
            "sender address (From, Sender or Reply-To) to check against it"
        )
    if not intake.admits(sender.email):
        return "allowlist", (
            f"new requests by mail are disabled and {sender.email} is not on the allowlist"
        )
    return "", ""
