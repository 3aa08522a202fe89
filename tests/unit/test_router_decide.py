"""The router's decision names its rule, and a dry run through a read-only book writes nothing."""

from __future__ import annotations

import copy

import pytest
from router_fakes import OPEN, InMemoryRequestBook, bounce, deliver, mail

from services.router.dry_run import ReadOnlyRequestBook, WriteRefused
from services.router.handler import decide
from services.router.intake import IntakePolicy


@pytest.fixture
def book() -> InMemoryRequestBook:
    book = InMemoryRequestBook()
    first = mail(message_id="<first@example.org>", subject="Printer on fire")
    assert deliver(book, first) == "request_created"  # request 1
    book.sent(about=first, message_id="<notify.1@desk.example>")
    lost = mail(message_id="<lost@example.org>", auto_reply=True)
    assert deliver(book, lost) == "rejected"
    book.sent(about=lost, message_id="<notify.2@desk.example>", topic="mail_error")
    return book


CASES = [
    ("a new mail", mail(), OPEN, "request_created", "new_request", None),
    ("a copy", mail(message_id="<first@example.org>"), OPEN, "duplicate", "seen_already", None),
    (
        "a reply",
        mail(in_reply_to=("<first@example.org>",)),
        OPEN,
        "conversation_added",
        "thread_headers",
        1,
    ),
    (
        "a reply to a notice",
        mail(references=("<notify.1@desk.example>",)),
        OPEN,
        "conversation_added",
        "notification_reply",
        1,
    ),
    ("a tag", mail(subject="Re: [Request ##1##] x"), OPEN, "conversation_added", "subject_tag", 1),
    (
        "an answer to an alert",
        mail(in_reply_to=("<notify.2@desk.example>",)),
        OPEN,
        "rejected",
        "reply_to_notification",
        None,
    ),
    (
        "our own notice",
        mail(message_id="<notify.1@desk.example>"),
        OPEN,
        "rejected",
        "own_notification",
        None,
    ),
    ("a bounce", bounce("<first@example.org>"), OPEN, "conversation_added", "bounce", 1),
    ("a stray bounce", bounce("<nobody@x>"), OPEN, "rejected", "bounce_unmatched", None),
    ("an auto-reply", mail(auto_reply=True), OPEN, "rejected", "auto_reply", None),
    (
        "a stranger",
        mail(),
        IntakePolicy(enabled=False, allow=("*@zylker.com",)),
        "rejected",
        "allowlist",
        None,
    ),
]


@pytest.mark.parametrize(("_", "msg", "intake", "outcome", "rule", "request_id"), CASES)
def test_the_decision_names_the_rule_that_decided(book, _, msg, intake, outcome, rule, request_id):
    before = copy.deepcopy(book.__dict__)

    decision = decide(msg, book=ReadOnlyRequestBook(book), intake=intake)

    assert (decision.outcome, decision.rule, decision.request_id) == (outcome, rule, request_id)
    assert book.__dict__ | {"asked": []} == before | {"asked": []}  # only lookups were made


@pytest.mark.parametrize(("_", "msg", "intake", "outcome", "rule", "request_id"), CASES)
def test_routing_records_the_outcome_the_decision_gives(
    book, _, msg, intake, outcome, rule, request_id
):
    assert deliver(book, msg, intake) == outcome


def test_a_read_only_book_refuses_every_write(book):
    ro = ReadOnlyRequestBook(book)
    msg = mail()

    for write in (
        lambda: ro.claim(msg, None),
        lambda: ro.open_request("default", "x", msg.mail.from_, None),
        lambda: ro.add_mail(1, msg, {}, None),
        lambda: ro.record_outcome(msg, "rejected", None, "", None),
    ):
        with pytest.raises(WriteRefused):
            write()
    assert msg.mail_id not in book.outcomes and len(book.requests) == 1
