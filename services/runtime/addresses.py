"""When two mail addresses are one: the rule every stage compares addresses by.

The router leaves the help desk's own addresses out of the recipients it keeps and checks
allowlists, the validator never tells its own mailbox about a stripped attachment, and the
notifier never mails its own mailbox (which would come back as a new mail). All of them
compare through ``normalised_address`` and ``AddressSet``, so the loop guard never disagrees
with itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

# "Ann <ann@x>": the address is what the angle brackets hold (the last pair, as mailers do).
_ANGLE = re.compile(r"<([^<>]*)>\s*$")


def normalised_address(address: str) -> str:
    """``address`` as Mailroom compares it; ``""`` when there is no address.

    White space around it and a display name with angle brackets (``Ann <ann@x>``) are
    dropped; the local part is lowercased, as help desks' mail servers treat it (RFC 5321
    lets a server tell case apart there, and none that Mailroom reads does); the domain loses
    a trailing dot (``example.com.`` is the fully qualified form of ``example.com``) and is
    written in its lowercase IDNA ASCII form: ``Ann@Bücher.example`` is
    ``ann@xn--bcher-kva.example``.
    """
    text = address.strip()
    if bracketed := _ANGLE.search(text):
        text = bracketed.group(1).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return text.lower()
    return f"{local.lower()}@{ascii_domain(domain)}"


def ascii_domain(domain: str) -> str:
    """``domain`` in lowercase IDNA ASCII form, without a trailing dot; lowercased as it is
    when it is no valid domain name, such as an address literal ``[192.0.2.1]``."""
    domain = domain.strip()
    if domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.lower()


def without_subaddress(address: str) -> str:
    """``support+tag@x`` -> ``support@x`` (a normalised address); as it is without a tag."""
    local, at, domain = address.rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" if at and base else address


@dataclass(frozen=True)
class AddressSet:
    """A set of addresses that answers ``address in s`` by ``normalised_address``.

    A subaddress of a member is a member too: mail to ``support+urgent@desk.example`` is
    delivered to ``support@desk.example``'s mailbox, so for loop protection it is that
    mailbox. The reverse does not hold: ``support+desk@x`` in the set leaves ``support@x``
    out.
    """

    members: frozenset[str] = frozenset()

    @classmethod
    def of(cls, addresses: Iterable[str]) -> AddressSet:
        return cls(frozenset(a for a in map(normalised_address, addresses) if a))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        found = normalised_address(address)
        return bool(found) and (found in self.members or without_subaddress(found) in self.members)

    def __bool__(self) -> bool:
        return bool(self.members)


#: No addresses: the default where a caller has none to exclude.
NO_ADDRESSES = AddressSet()
