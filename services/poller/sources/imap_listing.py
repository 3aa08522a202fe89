"""Which mails of an IMAP folder are new, without rereading the whole folder for each batch.

A round lists the folder's UIDs once and keeps those not taken yet; each later batch only
asks the server for UIDs above the highest seen (UIDs only grow within one UIDVALIDITY) and
asks the store about the few candidates it is about to return. A round over a folder of N
mails thus costs O(N) once, not O(N) per batch of 50.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


def make_ref(validity: int, uid: int) -> str:
    return f"{validity}:{uid}"


@dataclass
class NewMailListing:
    """The not-yet-taken UIDs of one folder at one UIDVALIDITY, oldest first."""

    validity: int
    #: ``taken_among(refs)``: those of ``refs`` the store holds as taken.
    taken_among: Callable[[list[str]], set[str]]
    highest: int = 0
    pending: list[int] = field(default_factory=list)
    #: UIDs found missing when fetched (moved or expunged by someone else).
    gone: set[int] = field(default_factory=set)

    @classmethod
    def start(
        cls,
        validity: int,
        uids: Iterable[int],
        taken: set[str],
        taken_among: Callable[[list[str]], set[str]],
    ) -> NewMailListing:
        """From the folder's whole UID list and every ref the store holds as taken."""
        ordered = sorted(uids)
        return cls(
            validity=validity,
            taken_among=taken_among,
            highest=ordered[-1] if ordered else 0,
            pending=[u for u in ordered if make_ref(validity, u) not in taken],
        )

    def add_arrivals(self, uids: Iterable[int]) -> None:
        """UIDs the server reports above ``highest`` (``UID n:*`` also answers the last one)."""
        newer = sorted(u for u in uids if u > self.highest)
        self.pending += newer
        self.highest = newer[-1] if newer else self.highest

    def next_refs(self, limit: int) -> list[str]:
        """Up to ``limit`` refs not taken, oldest first; what is taken or gone is dropped."""
        found: list[str] = []
        kept: list[int] = []
        scanned = 0
        while len(found) < limit and scanned < len(self.pending):
            chunk = self.pending[scanned : scanned + limit]
            scanned += len(chunk)
            refs = {u: make_ref(self.validity, u) for u in chunk if u not in self.gone}
            taken = self.taken_among(list(refs.values())) if refs else set()
            for uid, ref in refs.items():
                if ref not in taken:
                    kept.append(uid)
                    found.append(ref)
        self.pending = kept + self.pending[scanned:]
        return found[:limit]
