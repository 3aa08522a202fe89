"""Mailroom's own mail coming back: notifications are refused, bounces become notes."""

from __future__ import annotations

import pytest
from router_fakes import InMemoryRequestBook, bounce, deliver, mail

from contracts.mail import DeliveryReport, DeliveryStatus


@pytest.fixture
def book() -> InMemoryRequestBook:
    return InMemoryRequestBook()


@pytest.fixture
def first(book: InMemoryRequestBook):
    """A request opened by a customer's mail, and a notification sent about that mail."""
    msg = mail(message_id="<first@example.org>", subject="Installer attached")
    assert deliver(book, msg) == "request_created"
    book.sent(about=msg, message_id="<notify.1@desk.example>")
    return msg


def test_a_notification_that_comes_back_is_rejected_not_added_to_its_request(book, first):
    # Given the notification itself arriving in a mailbox (it answers the first mail)
    back = mail(
        message_id="<notify.1@desk.example>",
        subject="Re: Installer attached",
        in_reply_to=("<first@example.org>",),
        auto_reply=True,
    )

    # Then it is rejected, and the request keeps only the customer's mail
    assert deliver(book, back) == "rejected"
    assert "own notification 1 (attachment_stripped) came back" in book.detail_of(back)
    assert book.mail_ids_of(book.request_of(first)) == [first.mail_id]


def test_a_mail_with_the_notifiers_marks_is_rejected_even_when_the_store_forgot_it(book, first):
    back = mail(in_reply_to=("<first@example.org>",), auto_reply=True, sent_by_mailroom=True)

    assert deliver(book, back) == "rejected"
    assert "X-Mailroom-*" in book.detail_of(back)
    assert book.mail_ids_of(book.request_of(first)) == [first.mail_id]


def test_a_bounce_of_a_notification_becomes_a_note_on_the_request(book, first):
    # Given a delivery report about the notification
    dsn = bounce("<notify.1@desk.example>")

    # When it is routed
    outcome = deliver(book, dsn)

    # Then it is kept on the request as a note naming the recipient, status and diagnostic
    assert outcome == "conversation_added"
    assert len(book.requests) == 1
    request = book.requests[book.request_of(first)]
    kept = request.mails[-1]
    assert kept["mail_id"] == dsn.mail_id
    assert kept["kind"] == "bounce"
    assert kept["note"] == (
        "Delivery report about notification 1 (attachment_stripped): delivery to "
        "ann@example.org failed (status 5.1.1; smtp; 550 5.1.1 <ann@example.org>: User unknown)"
    )
    assert request.mails[0]["kind"] == "mail" and request.mails[0]["note"] is None


def test_a_bounce_of_a_mail_on_a_request_becomes_a_note_there(book, first):
    dsn = bounce("<first@example.org>")

    assert deliver(book, dsn) == "conversation_added"
    kept = book.requests[book.request_of(first)].mails[-1]
    assert kept["note"].startswith("Delivery report about a mail of this request: ")


@pytest.mark.parametrize(
    "found_by",
    [
        {"delivery_report": DeliveryReport(envelope_id="notify.1@desk.example")},
        {"delivery_report": DeliveryReport(), "in_reply_to": ("<notify.1@desk.example>",)},
    ],
    ids=["original-envelope-id", "in-reply-to"],
)
def test_a_bounce_without_the_returned_mail_is_found_by_envelope_id_or_in_reply_to(
    book, first, found_by
):
    dsn = mail(auto_reply=True, **found_by)

    assert deliver(book, dsn) == "conversation_added"
    assert book.request_of(dsn) == book.request_of(first)
    assert book.requests[book.request_of(first)].mails[-1]["note"].endswith("no recipient named")


def test_a_delayed_delivery_is_noted_as_delayed(book, first):
    report = DeliveryReport(
        original_message_id="<notify.1@desk.example>",
        recipients=[
            DeliveryStatus(address="fraser@example.com.au", action="delayed", status="4.2.2")
        ],
    )

    deliver(book, mail(auto_reply=True, delivery_report=report))

    note = book.requests[book.request_of(first)].mails[-1]["note"]
    assert note.endswith("delivery to fraser@example.com.au delayed (status 4.2.2)")


def test_a_bounce_about_a_mail_mailroom_never_sent_is_rejected(book, first):
    dsn = bounce("<someone-elses@example.net>")

    assert deliver(book, dsn) == "rejected"
    assert "<someone-elses@example.net>, which Mailroom did not send" in book.detail_of(dsn)
    assert len(book.requests) == 1


def test_a_bounce_naming_no_mail_is_rejected_even_when_requests_are_open_to_all(book):
    dsn = bounce(None, subject="Mail delivery failed")

    assert deliver(book, dsn) == "rejected"
    assert "a mail it does not name" in book.detail_of(dsn)
    assert book.requests == {}


def test_a_bounce_of_another_help_desks_notification_is_rejected(book, first):
    dsn = bounce("<notify.1@desk.example>", helpdesk="sales")

    assert deliver(book, dsn) == "rejected"
    assert book.mail_ids_of(book.request_of(first)) == [first.mail_id]


def test_a_bounce_of_a_notification_about_no_request_is_rejected_with_its_number(book):
    lost = mail(mail_id="dead-mail")
    notice = book.sent(about=lost, message_id="<notify.7@desk.example>", topic="mail_error")

    dsn = bounce("<notify.7@desk.example>")

    assert deliver(book, dsn) == "rejected"
    assert f"notification {notice}, which belongs to no request" in book.detail_of(dsn)


def test_the_same_bounce_fetched_twice_is_noted_once(book, first):
    dsn = bounce("<notify.1@desk.example>", message_id="<dsn@mx.example.net>")
    copy = bounce("<notify.1@desk.example>", message_id="<dsn@mx.example.net>")

    deliver(book, dsn)

    assert deliver(book, copy) == "duplicate"
    assert book.mail_ids_of(book.request_of(first)) == [first.mail_id, dsn.mail_id]
