"""What is kept of a mail on its request: the help desk's own addresses are left out."""

from __future__ import annotations

from router_fakes import InMemoryRequestBook, deliver, mail

from contracts.mail import Address
from services.runtime.addresses import AddressSet

OWN = AddressSet.of(("support@desk.example", "help@desk.example", "billing@bücher.example"))


def test_the_help_desks_own_addresses_are_left_out_of_to_and_cc():
    book = InMemoryRequestBook()
    msg = mail(
        to=[
            Address(name="Support", email="SUPPORT@Desk.Example"),
            Address(email="bob@example.org"),
        ],
        cc=[Address(email="help@desk.example"), Address(email="billing@xn--bcher-kva.example")],
    )

    deliver(book, msg, own=OWN)

    [kept] = book.requests[book.request_of(msg)].mails
    assert kept["to"] == [{"name": "", "email": "bob@example.org"}]
    assert kept["cc"] == []


def test_other_recipients_are_kept_as_written():
    book = InMemoryRequestBook()
    msg = mail(cc=[Address(name="Dana", email="Dana@Customer.example")])

    deliver(book, msg, own=OWN)

    [kept] = book.requests[book.request_of(msg)].mails
    assert kept["cc"] == [{"name": "Dana", "email": "Dana@Customer.example"}]
