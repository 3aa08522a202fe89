"""Threading: replies to mails and to notifications, subject tags, and the References bound."""

from __future__ import annotations

import pytest
from router_fakes import InMemoryRequestBook, deliver, mail

from services.router.tags import subject_tag, tagged_request_ids
from services.router.threading import MAX_THREAD_IDS


@pytest.fixture
def book() -> InMemoryRequestBook:
    return InMemoryRequestBook()


def opened(book: InMemoryRequestBook, **fields) -> tuple[object, int]:
    """A first mail routed into a new request: (the mail, the request id)."""
    first = mail(**fields)
    assert deliver(book, first) == "request_created"
    request_id = book.request_of(first)
    assert request_id is not None
    return first, request_id


def test_the_tag_is_request_number_between_double_hashes():
    assert subject_tag(12) == "[Request ##12##]"
    assert tagged_request_ids(f"Re: {subject_tag(12)} VPN down") == [12]


@pytest.mark.parametrize(
    "subject",
    [
        "Re: [Request ##{n}##] VPN down",
        "RE: RE: Fwd: [Request ##{n}##] VPN down",
        "AW: WG: [Request ##{n}##] VPN down",
        "SV: VS: Antw: [Request ##{n}##] VPN down",
        "re:fw:[request ##{n}##] VPN down",
        "FW: [EXTERNAL] Re: [REQUEST ## {n} ##] VPN down",
        "[Request ##{n}##]",
    ],
)
def test_the_tag_behind_any_reply_or_forward_prefixes_joins_the_request(book, subject):
    _, request_id = opened(book, subject="VPN down")

    reply = mail(subject=subject.format(n=request_id))

    assert deliver(book, reply) == "conversation_added"
    assert book.request_of(reply) == request_id


def test_the_old_single_hash_tag_still_joins_the_request(book):
    _, request_id = opened(book)

    reply = mail(subject=f"Re: [Request #{request_id}] Printer on fire")

    assert deliver(book, reply) == "conversation_added"
    assert book.request_of(reply) == request_id


@pytest.mark.parametrize(
    "subject",
    ["Request ##1## without brackets", "[Ticket ##1##]", "[Request ##99999999999##] huge"],
)
def test_text_that_is_not_a_tag_of_a_request_opens_a_new_request(book, subject):
    opened(book)

    assert deliver(book, mail(subject=subject)) == "request_created"
    assert len(book.requests) == 2


def test_the_first_tag_naming_a_request_of_this_help_desk_wins(book):
    _, foreign = opened(book, helpdesk="sales")
    _, local = opened(book, helpdesk="default")

    reply = mail(subject=f"Re: {subject_tag(foreign)} Fwd: {subject_tag(local)} printer")

    assert deliver(book, reply) == "conversation_added"
    assert book.request_of(reply) == local


def test_a_reply_arriving_in_another_mailbox_of_the_help_desk_joins_the_request(book):
    first, request_id = opened(book, mailbox="support", message_id="<first@example.org>")

    reply = mail(mailbox="billing", in_reply_to=("<first@example.org>",))

    assert deliver(book, reply) == "conversation_added"
    assert book.mail_ids_of(request_id) == [first.mail_id, reply.mail_id]


def test_a_reply_to_a_notification_joins_the_request_of_the_mail_it_was_about(book):
    # Given a request, and a notification Mailroom sent to its sender
    first, request_id = opened(book, subject="Installer attached")
    book.sent(about=first, message_id="<notify.1@desk.example>")

    # When the customer answers the notification (no tag, only its Message-ID)
    reply = mail(subject="Re: Installer attached", in_reply_to=("<notify.1@desk.example>",))

    # Then the answer is a conversation on the request
    assert deliver(book, reply) == "conversation_added"
    assert book.mail_ids_of(request_id) == [first.mail_id, reply.mail_id]


def test_a_reply_to_a_notification_of_another_help_desk_opens_a_request_here(book):
    first, foreign = opened(book, helpdesk="sales")
    book.sent(about=first, message_id="<notify.1@sales.example>")

    reply = mail(helpdesk="default", in_reply_to=("<notify.1@sales.example>",))

    assert deliver(book, reply) == "request_created"
    assert book.mail_ids_of(foreign) == [first.mail_id]


def test_a_reply_to_a_notification_about_no_request_opens_nothing(book):
    # Given a notification about a mail that is on no request (it was dead-lettered)
    lost = mail(mail_id="dead-mail")
    notice = book.sent(about=lost, message_id="<notify.9@desk.example>", topic="mail_error")

    # When a support rep answers it
    reply = mail(
        subject="Re: Mail could not be processed", in_reply_to=("<notify.9@desk.example>",)
    )

    # Then no request is opened, and the reason names the notification
    assert deliver(book, reply) == "rejected"
    assert book.requests == {}
    assert f"notification {notice} (mail_error)" in book.detail_of(reply)


def test_a_reference_among_thousands_joins_when_it_is_among_the_newest(book):
    first, request_id = opened(book, message_id="<first@example.org>")
    noise = tuple(f"<noise-{i}@example.net>" for i in range(5000))

    reply = mail(references=(*noise, "<first@example.org>"))

    assert deliver(book, reply) == "conversation_added"
    assert book.request_of(reply) == request_id
    assert max(len(ids) for ids in book.asked) <= MAX_THREAD_IDS


def test_only_the_newest_references_are_looked_up(book):
    # Given a request, and a mail naming it only before thousands of newer references
    opened(book, message_id="<first@example.org>")
    noise = tuple(f"<noise-{i}@example.net>" for i in range(5000))
    msg = mail(subject="Something new", references=("<first@example.org>", *noise))
    book.asked.clear()

    # Then the old reference is not looked up, and the mail opens its own request
    assert deliver(book, msg) == "request_created"
    assert all("<first@example.org>" not in ids for ids in book.asked)
    assert max(len(ids) for ids in book.asked) <= MAX_THREAD_IDS
