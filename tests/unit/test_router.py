"""The router: a new request, a conversation on an existing one, a duplicate or a refusal."""

from __future__ import annotations

import pytest
from router_fakes import NOW, OPEN, InMemoryRequestBook, deliver, mail

from services.router.handler import route
from services.router.intake import IntakePolicy
from services.router.tags import subject_tag

ALLOWLIST = IntakePolicy(enabled=False, allow=("heather@zylker.com", "*@zylker.com"))


@pytest.fixture
def book() -> InMemoryRequestBook:
    return InMemoryRequestBook()


def request_of(book: InMemoryRequestBook, msg) -> int | None:
    return book.request_of(msg)


def mail_ids_of(book: InMemoryRequestBook, request_id: int | None) -> list[str]:
    return book.mail_ids_of(request_id)


def test_a_first_mail_opens_a_request_with_its_subject_and_requester(book):
    # Given a mail from a new customer
    msg = mail(from_addr="ann@example.org", subject="Printer on fire")

    # When it is routed
    outcome = deliver(book, msg)

    # Then one request exists, opened by that mail
    assert outcome == "request_created"
    [request] = book.requests.values()
    assert request.helpdesk == "default"
    assert request.subject == "Printer on fire"
    assert request.requester.email == "ann@example.org"
    assert mail_ids_of(book, request.id) == [msg.mail_id]
    assert request.mails[0]["source"] == {"mailbox": "default-box", "ref": msg.source.ref}


def test_a_mail_without_subject_opens_a_request_named_no_subject(book):
    deliver(book, mail(subject=""))

    [request] = book.requests.values()
    assert request.subject == "(no subject)"


def test_a_reply_by_in_reply_to_is_added_to_the_request(book):
    # Given a request opened by a first mail
    first = mail(message_id="<first@example.org>")
    deliver(book, first)

    # When a reply names it in In-Reply-To
    reply = mail(subject="Re: Printer on fire", in_reply_to=("<first@example.org>",))
    outcome = deliver(book, reply)

    # Then it becomes a conversation on that request, and no request is opened
    assert outcome == "conversation_added"
    assert len(book.requests) == 1
    assert mail_ids_of(book, request_of(book, first)) == [first.mail_id, reply.mail_id]


def test_a_reply_found_by_references_only_is_added_to_the_request(book):
    first = mail(message_id="<first@example.org>")
    deliver(book, first)

    reply = mail(
        subject="Something else entirely",
        references=("<unknown@elsewhere.example>", "<first@example.org>"),
    )

    assert deliver(book, reply) == "conversation_added"
    assert request_of(book, reply) == request_of(book, first)
    assert len(book.requests) == 1


def test_a_reply_to_a_conversation_mail_joins_the_same_request(book):
    first = mail(message_id="<first@example.org>")
    second = mail(message_id="<second@example.org>", in_reply_to=("<first@example.org>",))
    deliver(book, first)
    deliver(book, second)

    third = mail(in_reply_to=("<second@example.org>",))

    assert deliver(book, third) == "conversation_added"
    assert request_of(book, third) == request_of(book, first)


def test_a_subject_tag_adds_the_mail_to_the_tagged_request(book):
    # Given two requests
    deliver(book, mail(subject="Printer on fire"))
    second = mail(subject="VPN down")
    deliver(book, second)
    tagged = request_of(book, second)
    assert tagged is not None

    # When a mail without threading headers carries the second one's tag
    reply = mail(subject=f"Re: {subject_tag(tagged)} VPN down")
    outcome = deliver(book, reply)

    # Then it is a conversation on the tagged request
    assert outcome == "conversation_added"
    assert request_of(book, reply) == tagged
    assert len(book.requests) == 2


def test_a_subject_tag_is_recognised_whatever_its_case(book):
    first = mail()
    deliver(book, first)
    request_id = request_of(book, first)

    reply = mail(subject=f"RE: [request #{request_id}] thanks")

    assert deliver(book, reply) == "conversation_added"
    assert request_of(book, reply) == request_id


def test_a_subject_tag_naming_no_request_opens_a_new_request(book):
    msg = mail(subject="Re: [Request #999] where is my order?")

    assert deliver(book, msg) == "request_created"
    assert len(book.requests) == 1


def test_a_subject_tag_of_another_help_desks_request_opens_a_new_request(book):
    # Given a request in help desk "sales"
    other = mail(helpdesk="sales")
    deliver(book, other)
    foreign = request_of(book, other)

    # When a mail to help desk "default" carries that request's tag
    msg = mail(helpdesk="default", subject=f"{subject_tag(foreign)} hello")
    outcome = deliver(book, msg)

    # Then the foreign request is untouched and "default" gets its own request
    assert outcome == "request_created"
    assert request_of(book, msg) != foreign
    assert mail_ids_of(book, foreign) == [other.mail_id]
    assert book.requests[request_of(book, msg)].helpdesk == "default"


def test_in_reply_to_a_mail_of_another_help_desk_opens_a_new_request(book):
    other = mail(helpdesk="sales", message_id="<sales-1@example.org>")
    deliver(book, other)

    msg = mail(helpdesk="default", in_reply_to=("<sales-1@example.org>",))

    assert deliver(book, msg) == "request_created"
    assert len(book.requests) == 2


def test_a_second_mail_with_the_same_message_id_in_the_help_desk_is_a_duplicate(book):
    # Given a mail fetched from one mailbox
    first = mail(message_id="<same@example.org>")
    deliver(book, first)

    # When a copy of it (another mail id: another mailbox or ref) arrives in the same help desk
    copy = mail(message_id="<same@example.org>")
    outcome = deliver(book, copy)

    # Then it is a duplicate: no new request, no conversation
    assert outcome == "duplicate"
    assert request_of(book, copy) is None
    assert "<same@example.org>" in book.outcomes[copy.mail_id].detail
    assert len(book.requests) == 1
    assert mail_ids_of(book, request_of(book, first)) == [first.mail_id]


def test_the_same_message_id_in_another_help_desk_opens_a_request_there(book):
    deliver(book, mail(helpdesk="default", message_id="<same@example.org>"))

    msg = mail(helpdesk="sales", message_id="<same@example.org>")

    assert deliver(book, msg) == "request_created"
    assert book.requests[request_of(book, msg)].helpdesk == "sales"
    assert len(book.requests) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: mail(mail_id="again"),
        lambda: mail(mail_id="again", subject="", auto_reply=True),
    ],
    ids=["request", "rejection"],
)
def test_a_redelivered_mail_changes_nothing(book, make):
    # Given a mail that was routed once
    msg = make()
    deliver(book, msg)
    requests_before = {i: list(r.mails) for i, r in book.requests.items()}
    outcomes_before = dict(book.outcomes)

    # When the same delivery comes again (the worker died before its ack)
    outputs = route(msg, book=book, intake=OPEN, now=NOW)

    # Then nothing is added, doubled or changed
    assert outputs == []
    assert {i: list(r.mails) for i, r in book.requests.items()} == requests_before
    assert book.outcomes == outcomes_before


def test_a_redelivered_reply_is_not_added_twice(book):
    first = mail(message_id="<first@example.org>")
    reply = mail(mail_id="reply", in_reply_to=("<first@example.org>",))
    deliver(book, first)
    deliver(book, reply)

    route(reply, book=book, intake=OPEN, now=NOW)

    assert mail_ids_of(book, request_of(book, first)) == [first.mail_id, "reply"]
    assert book.outcome_of("reply") == "conversation_added"


def test_an_auto_reply_does_not_open_a_request(book):
    msg = mail(subject="Out of office", auto_reply=True)

    assert deliver(book, msg) == "rejected"
    assert book.requests == {}
    assert "automatic reply" in book.outcomes[msg.mail_id].detail


def test_an_auto_reply_in_a_thread_is_added_as_a_conversation(book):
    first = mail(message_id="<first@example.org>")
    deliver(book, first)

    auto = mail(subject="Out of office", auto_reply=True, in_reply_to=("<first@example.org>",))

    assert deliver(book, auto) == "conversation_added"
    assert request_of(book, auto) == request_of(book, first)


@pytest.mark.parametrize(
    "from_addr", ["heather@zylker.com", "Heather@Zylker.com", "bob@zylker.com", "BOB@ZYLKER.COM"]
)
def test_with_intake_limited_a_listed_address_or_domain_opens_a_request(book, from_addr):
    msg = mail(from_addr=from_addr)

    assert deliver(book, msg, ALLOWLIST) == "request_created"
    assert book.requests[request_of(book, msg)].requester.email == from_addr


@pytest.mark.parametrize(
    "from_addr", ["ann@example.org", "eve@notzylker.com", "heather@zylker.com.evil.example"]
)
def test_with_intake_limited_anyone_else_is_rejected_with_the_reason(book, from_addr):
    msg = mail(from_addr=from_addr)

    assert deliver(book, msg, ALLOWLIST) == "rejected"
    assert book.requests == {}
    detail = book.outcomes[msg.mail_id].detail
    assert from_addr in detail
    assert "allowlist" in detail


def test_with_intake_limited_a_reply_from_anyone_is_accepted(book):
    # Given a request opened by an allowed sender
    first = mail(from_addr="heather@zylker.com", message_id="<first@zylker.com>")
    deliver(book, first, ALLOWLIST)

    # When someone not on the list replies, in the thread or by subject tag
    by_header = mail(from_addr="ann@example.org", in_reply_to=("<first@zylker.com>",))
    by_tag = mail(from_addr="ann@example.org", subject=subject_tag(request_of(book, first)))

    # Then both replies are accepted as conversations
    assert deliver(book, by_header, ALLOWLIST) == "conversation_added"
    assert deliver(book, by_tag, ALLOWLIST) == "conversation_added"
    assert mail_ids_of(book, request_of(book, first)) == [
        first.mail_id,
        by_header.mail_id,
        by_tag.mail_id,
    ]
