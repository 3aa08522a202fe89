"""Addresses as the router reads them: who sent a mail, and which recipients are kept.

Two addresses are the same by ``services.runtime.addresses`` (case, IDNA, trailing dot), the
rule every stage shares.
"""

from __future__ import annotations

from contracts.mail import Address, ParsedMail
from services.runtime.addresses import AddressSet


def is_usable(address: Address | None) -> bool:
    """Whether ``address`` can be answered: ``local@domain``, no spaces, no brackets."""
    if address is None:
        return False
    local, at, domain = address.email.rpartition("@")
    plain = not any(c.isspace() or c in "<>" for c in address.email)
    return bool(at and local and domain and plain)


def sender_of(mail: ParsedMail) -> Address | None:
    """Who sent ``mail``: From, else Sender, else the first Reply-To; the first of them with
    a usable address. None when none has one."""
    candidates = [mail.from_, mail.sender, *mail.reply_to]
    return next((a for a in candidates if is_usable(a)), None)


def without(addresses: list[Address], excluded: AddressSet) -> list[Address]:
    """``addresses`` less those in ``excluded``."""
    return [a for a in addresses if a.email not in excluded]
