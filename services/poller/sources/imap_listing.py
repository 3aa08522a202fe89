"""Which mails of an IMAP folder are new, at a cost that grows with new mail, not folder size.

The store keeps a watermark per UIDVALIDITY: every UID up to it is taken, or gone (UIDs are
never reused). A session starts from there. When SELECT's UIDNEXT shows no UID above it, or
HIGHESTMODSEQ is the one recorded when all of the folder was taken, nothing is listed at
all; otherwise only ``UID SEARCH UID n+1:*`` is asked, and only its answers are checked
against the store, a chunk at a time. Later batches ask only for UIDs above the highest
seen. The watermark rises over a run of UIDs found taken or gone, never past one that is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: Refs per store check: bounded statements (SQLite allows 999 parameters on old builds).
CHECK_CHUNK = 500


def make_ref(validity: int, uid: int) -> str:
    return f"{validity}:{uid}"


def uid_of(ref: str, validity: int | str) -> int | None:
    """The UID of ``ref`` when it belongs to a folder with this UIDVALIDITY, else None."""
    head, _, tail = ref.partition(":")
    if head != str(validity) or not tail.isdigit():
        return None
    return int(tail)


def nothing_new(
    watermark: int, settled_modseq: int | None, uidnext: int | None, modseq: int | None
) -> bool:
    """Whether a folder just selected can hold no mail above ``watermark``.

    ``uidnext`` and ``modseq`` are the SELECT's UIDNEXT and HIGHESTMODSEQ (None when it
    gave none); ``settled_modseq`` is the HIGHESTMODSEQ recorded when all of it was taken.
    Either proof suffices: no UID was given out above the watermark, or nothing changed.
    """
    if uidnext is not None and uidnext - 1 <= watermark:
        return True
    return modseq is not None and modseq == settled_modseq


@dataclass
class NewMailListing:
    """The not-yet-taken UIDs of one folder at one UIDVALIDITY, oldest first."""

    validity: int
    #: ``taken_among(refs)``: those of ``refs`` the store holds as taken.
    taken_among: Callable[[list[str]], set[str]]
    #: Every UID up to here that exists was listed (and is taken, or in ``pending``).
    highest: int = 0
    #: Listed UIDs not found taken yet, ascending; the first ones are checked per batch.
    pending: list[int] = field(default_factory=list)
    #: UIDs found missing when fetched (moved or expunged by someone else).
    gone: set[int] = field(default_factory=set)
    #: HIGHESTMODSEQ of the SELECT the listing started from (None without CONDSTORE).
    modseq: int | None = None

    @classmethod
    def above(
        cls,
        validity: int,
        watermark: int,
        uids: Iterable[int],
        taken_among: Callable[[list[str]], set[str]],
        *,
        listed_up_to: int = 0,
        modseq: int | None = None,
    ) -> NewMailListing:
        """From the UIDs the server lists above the store's ``watermark`` (``UID n+1:*``
        also answers the highest UID, which may be at or below it). ``listed_up_to``:
        UIDNEXT - 1 of a SELECT made before the search, which saw every UID up to it."""
        ordered = sorted({u for u in uids if u > watermark})
        highest = max(watermark, listed_up_to, ordered[-1] if ordered else 0)
        return cls(validity, taken_among, highest=highest, pending=ordered, modseq=modseq)

    def add_arrivals(self, uids: Iterable[int]) -> None:
        """UIDs the server reports above ``highest`` (``UID n:*`` also answers the last one)."""
        newer = sorted(u for u in set(uids) if u > self.highest)
        self.pending += newer
        self.highest = newer[-1] if newer else self.highest

    def next_refs(self, limit: int) -> list[str]:
        """Up to ``limit`` refs not taken, oldest first; what is taken or gone is dropped."""
        found: list[str] = []
        kept: list[int] = []
        scanned = 0
        while len(found) < limit and scanned < len(self.pending):
            chunk = self.pending[scanned : scanned + CHECK_CHUNK]
            scanned += len(chunk)
            refs = {u: make_ref(self.validity, u) for u in chunk if u not in self.gone}
            taken = self.taken_among(list(refs.values())) if refs else set()
            for uid, ref in refs.items():
                if ref not in taken:
                    kept.append(uid)
                    found.append(ref)
        self.pending = kept + self.pending[scanned:]
        return found[:limit]

    def watermark(self) -> int:
        """The highest UID up to which every UID is taken or gone, as far as checked."""
        first = next((u for u in self.pending if u not in self.gone), None)
        return self.highest if first is None else first - 1

    def settled_modseq(self) -> int | None:
        """The starting HIGHESTMODSEQ once every mail listed is taken, else None."""
        return self.modseq if self.watermark() == self.highest else None
