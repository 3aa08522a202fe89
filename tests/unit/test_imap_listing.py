"""Which IMAP mails are new: only what lies above the watermark, checked a chunk at a time."""

from __future__ import annotations

from services.poller.sources.imap_listing import (
    CHECK_CHUNK,
    NewMailListing,
    make_ref,
    nothing_new,
)

VALIDITY = 7


class Store:
    """The taken refs, and how many refs each batch check asked about."""

    def __init__(self, *uids: int) -> None:
        self.taken = {make_ref(VALIDITY, u) for u in uids}
        self.asked: list[int] = []

    def taken_among(self, refs: list[str]) -> set[str]:
        self.asked.append(len(refs))
        return self.taken & set(refs)

    def take(self, refs: list[str]) -> None:
        self.taken |= set(refs)


def listing(store: Store, uids: range, watermark: int = 0, **options: int) -> NewMailListing:
    return NewMailListing.above(VALIDITY, watermark, uids, store.taken_among, **options)


def test_new_mails_come_oldest_first_and_again_until_taken() -> None:
    store = Store(1, 2)
    new = listing(store, range(1, 8))

    first = new.next_refs(3)
    again = new.next_refs(3)
    store.take(first)
    then = new.next_refs(3)

    assert first == again == ["7:3", "7:4", "7:5"]
    assert then == ["7:6", "7:7"]


def test_a_batch_asks_the_store_about_a_bounded_chunk_only() -> None:
    store = Store()
    new = listing(store, range(1, 10_001))

    while refs := new.next_refs(50):
        store.take(refs)

    assert len(store.taken) == 10_000
    assert max(store.asked) == CHECK_CHUNK < 10_000, "never the whole folder per batch"


def test_uids_at_or_below_the_watermark_are_never_offered() -> None:
    store = Store()
    # `UID 6:*` with nothing above 5 still answers the highest UID, here 5
    new = listing(store, range(5, 6), watermark=5)

    assert new.next_refs(10) == []
    assert store.asked == [], "nothing to ask the store about"


def test_the_watermark_rises_over_taken_mail_and_stops_below_the_first_not_taken() -> None:
    store = Store(1, 2, 4)
    new = listing(store, range(1, 6))

    offered = new.next_refs(10)

    assert offered == ["7:3", "7:5"]
    assert new.watermark() == 2, "3 is not taken: nothing above it counts yet"
    store.take(["7:5"])  # the later mail was handed off, the earlier one failed
    new.next_refs(10)
    assert new.watermark() == 2
    store.take(["7:3"])
    new.next_refs(10)
    assert new.watermark() == 5


def test_gone_mail_and_uids_never_listed_count_as_passed() -> None:
    store = Store(1)
    # UIDs 2 and 4 do not exist; the SELECT before the search said UIDNEXT 9
    new = listing(store, range(1, 4, 2), listed_up_to=8)
    new.next_refs(10)

    new.gone.add(3)  # moved away by someone else before it was fetched

    assert new.watermark() == 8


def test_arrivals_join_at_the_end_once() -> None:
    store = Store()
    new = listing(store, range(1, 3))
    store.take(new.next_refs(10))

    new.add_arrivals([2])  # `UID 3:*` with nothing above 2 answers the last mail, 2
    nothing = new.next_refs(10)
    new.add_arrivals([3, 4])
    arrived = new.next_refs(10)

    assert nothing == []
    assert arrived == ["7:3", "7:4"]


def test_a_mail_gone_from_the_folder_is_not_offered_again() -> None:
    store = Store()
    new = listing(store, range(1, 4))
    offered = new.next_refs(2)

    new.gone.add(1)  # someone moved it away before it was fetched
    store.take(["7:2"])

    assert offered == ["7:1", "7:2"]
    assert new.next_refs(2) == ["7:3"]


def test_the_modseq_is_settled_only_once_everything_listed_is_taken() -> None:
    store = Store(1)
    new = listing(store, range(1, 3), modseq=40)

    new.next_refs(10)
    unsettled = new.settled_modseq()
    store.take(["7:2"])
    new.next_refs(10)

    assert unsettled is None
    assert new.settled_modseq() == 40


def test_nothing_is_new_when_no_uid_was_given_out_above_the_watermark() -> None:
    assert nothing_new(watermark=9, settled_modseq=None, uidnext=10, modseq=None)
    assert not nothing_new(watermark=9, settled_modseq=None, uidnext=11, modseq=None)


def test_without_uidnext_an_unchanged_highestmodseq_tells_nothing_is_new() -> None:
    assert nothing_new(watermark=9, settled_modseq=50, uidnext=None, modseq=50)
    assert not nothing_new(watermark=9, settled_modseq=50, uidnext=None, modseq=51)
    assert not nothing_new(watermark=9, settled_modseq=None, uidnext=None, modseq=None)
