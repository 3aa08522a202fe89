"""Which IMAP mails are new: listed once per round, then only arrivals and a batch's check."""

from __future__ import annotations

from services.poller.sources.imap_listing import NewMailListing, make_ref

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


def listing(store: Store, uids: range) -> NewMailListing:
    return NewMailListing.start(VALIDITY, uids, set(store.taken), store.taken_among)


def test_new_mails_come_oldest_first_and_again_until_taken() -> None:
    store = Store(1, 2)
    new = listing(store, range(1, 8))

    first = new.next_refs(3)
    again = new.next_refs(3)
    store.take(first)
    then = new.next_refs(3)

    assert first == again == ["7:3", "7:4", "7:5"]
    assert then == ["7:6", "7:7"]


def test_a_batch_asks_the_store_about_its_candidates_only() -> None:
    store = Store()
    new = listing(store, range(1, 10_001))

    while refs := new.next_refs(50):
        store.take(refs)

    assert len(store.taken) == 10_000
    assert max(store.asked) == 50, "never the whole folder per batch"


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
