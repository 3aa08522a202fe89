"""Deterministic identities shared by every stage."""

from __future__ import annotations

import hashlib


def mail_id(mailbox: str, ref: str) -> str:
    """The id of one mail: derived from its mailbox and the protocol's own identity of it.

    The same mail fetched twice (after a crash, say) always gets the same id, which is what
    makes every stage idempotent.
    """
    return hashlib.sha256(f"{mailbox}\x00{ref}".encode()).hexdigest()[:32]


def content_hash(data: bytes) -> str:
    """The address of a blob in the store."""
    return hashlib.sha256(data).hexdigest()
