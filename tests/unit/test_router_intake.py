"""Who opens a request: the sender by From, Sender or Reply-To, checked against the allowlist."""

from __future__ import annotations

import pytest
from router_fakes import InMemoryRequestBook, deliver, mail

from contracts.mail import Address
from services.router.intake import IntakePolicy
from services.runtime.addresses import normalised_address as normalised

ALLOWLIST = IntakePolicy(enabled=False, allow=("heather@zylker.com", "*@zylker.com"))
IDN_ALLOWLIST = IntakePolicy(enabled=False, allow=("ann@bücher.example", "*@Straße.example"))


@pytest.fixture
def book() -> InMemoryRequestBook:
    return InMemoryRequestBook()


def requester_of(book: InMemoryRequestBook, msg) -> Address:
    return book.requests[book.request_of(msg)].requester


@pytest.mark.parametrize(
    ("written", "same_as"),
    [
        ("Ann@Bücher.Example", "ann@xn--bcher-kva.example"),
        ("ANN@XN--BCHER-KVA.EXAMPLE", "ann@bücher.example"),
        ("heather@Zylker.COM", "HEATHER@zylker.com"),
    ],
)
def test_addresses_compare_ignoring_case_and_idna_form(written, same_as):
    assert normalised(written) == normalised(same_as)


def test_an_address_literal_or_broken_domain_is_compared_as_lowercase_text():
    assert normalised("Ops@[192.0.2.1]") == "ops@[192.0.2.1]"
    assert normalised("a@exa_mple.COM") == "a@exa_mple.com"


@pytest.mark.parametrize(
    "from_addr", ["ann@xn--bcher-kva.example", "ANN@BÜCHER.example", "bob@xn--strae-oqa.example"]
)
def test_the_allowlist_matches_international_domains_in_either_form(book, from_addr):
    msg = mail(from_addr=from_addr)

    assert deliver(book, msg, IDN_ALLOWLIST) == "request_created"


@pytest.mark.parametrize("from_addr", ["ann@bucher.example", "eve@xn--bcher-kva.example"])
def test_the_allowlist_does_not_stretch_to_lookalikes(book, from_addr):
    assert deliver(book, mail(from_addr=from_addr), IDN_ALLOWLIST) == "rejected"


@pytest.mark.parametrize("unusable", ["Ann Example", "<>", "ann", ""])
def test_a_from_without_usable_address_falls_back_to_sender(book, unusable):
    # Given a From that names nobody who can be answered, and a Sender that does
    msg = mail(
        from_addr=unusable,
        sender=Address(name="Heather Lee", email="heather@zylker.com"),
        reply_to=[Address(email="someone@else.example")],
    )

    # Then the Sender opens the request, and the allowlist is checked against it
    assert deliver(book, msg, ALLOWLIST) == "request_created"
    assert requester_of(book, msg) == Address(name="Heather Lee", email="heather@zylker.com")


def test_without_from_or_sender_the_reply_to_is_the_sender(book):
    msg = mail(from_addr=None, reply_to=[Address(email="<>"), Address(email="eve@example.org")])

    assert deliver(book, msg, ALLOWLIST) == "rejected"
    assert "eve@example.org is not on the allowlist" in book.detail_of(msg)


def test_a_usable_from_wins_over_sender_and_reply_to(book):
    msg = mail(
        from_addr="ann@example.org",
        sender=Address(email="heather@zylker.com"),
        reply_to=[Address(email="bob@zylker.com")],
    )

    assert deliver(book, msg, ALLOWLIST) == "rejected"
    assert "ann@example.org" in book.detail_of(msg)


def test_a_mail_without_any_sender_address_opens_a_request_for_an_unknown_requester(book):
    msg = mail(from_addr="Ann Example")

    assert deliver(book, msg) == "request_created"
    assert requester_of(book, msg) == Address(name="unknown", email="")


def test_with_intake_limited_a_mail_without_any_sender_address_is_rejected(book):
    msg = mail(from_addr=None)

    assert deliver(book, msg, ALLOWLIST) == "rejected"
    assert "no sender address" in book.detail_of(msg)
    assert book.requests == {}
