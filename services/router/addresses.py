"""Addresses as the router compares them: who sent a mail, and when two addresses are one.

Two addresses are the same when they match ignoring case, with an internationalised domain
compared in its ASCII (IDNA, "punycode") form: ``Ann@Bücher.example`` is
``ann@xn--bcher-kva.example``.
"""

from __future__ import annotations

import idna

from contracts.mail import Address, ParsedMail


def normalised(address: str) -> str:
    """``address`` lowercased, its domain in IDNA ASCII form where it is a valid domain name."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.lower()}@{ascii_domain(domain)}"


def ascii_domain(domain: str) -> str:
    """``domain`` in IDNA ASCII form, lowercased; as it is (lowercased) when it is no valid
    domain name, such as an address literal ``[192.0.2.1]``."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.lower()


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


def without(addresses: list[Address], excluded: frozenset[str]) -> list[Address]:
    """``addresses`` less those in ``excluded`` (normalised addresses)."""
    return [a for a in addresses if normalised(a.email) not in excluded]
