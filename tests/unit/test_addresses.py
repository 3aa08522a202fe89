"""One rule for "is this one of our addresses?", and every stage's loop guard follows it."""

from __future__ import annotations

import pytest
from router_fakes import NOW, InMemoryRequestBook, deliver, mail

from contracts.mail import Address, Attachment, MailParsed, ParsedMail, SourceRef
from contracts.notify import Notify
from contracts.settings import MailboxSettings, NotificationSettings
from services.notifier.handler import Outgoing, notify
from services.notifier.testing import InMemoryOutbox, RecordingSender
from services.router.worker import own_addresses
from services.runtime.addresses import AddressSet, normalised_address
from services.runtime.cached_settings import ConfiguredMailbox
from services.runtime.testing import InMemoryBlobStore
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

OWN = ["support@xn--bcher-kva.example", "help@desk.example"]


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("ann@example.org", "ann@example.org"),
        ("Ann@Example.ORG", "ann@example.org"),
        ("  ann@example.org \t", "ann@example.org"),
        ("Ann Lee <Ann@Example.org>", "ann@example.org"),
        ('"Lee, Ann" < ann@example.org >', "ann@example.org"),
        ("<ann@example.org>", "ann@example.org"),
        ("ann@example.org.", "ann@example.org"),
        ("Support@BÜCHER.example", "support@xn--bcher-kva.example"),
        ("support@xn--BCHER-KVA.example.", "support@xn--bcher-kva.example"),
        ("ann@Straße.example", "ann@xn--strae-oqa.example"),
        ("ann+billing@example.org", "ann+billing@example.org"),
        ("Ops@[192.0.2.1]", "ops@[192.0.2.1]"),
        ("a@exa_mple.COM", "a@exa_mple.com"),
        ("no-domain", "no-domain"),
        ("", ""),
        ("   ", ""),
        ("<>", ""),
    ],
)
def test_addresses_are_normalised_by_one_rule(written, normalised):
    assert normalised_address(written) == normalised


@pytest.mark.parametrize(
    ("address", "own"),
    [
        ("Support@BÜCHER.example", True),
        ("support@bücher.example.", True),
        (" HELP@desk.example ", True),
        ("Help Desk <help@DESK.example>", True),
        ("support+urgent@bücher.example", True),  # a subaddress reaches the same mailbox
        ("help+x+y@desk.example", True),
        ("supporter@bücher.example", False),
        ("help@desk.example.org", False),
        ("help@sub.desk.example", False),
        ("", False),
    ],
)
def test_an_address_set_matches_by_the_same_rule(address, own):
    assert (address in AddressSet.of(OWN)) is own


def test_a_tagged_own_address_does_not_make_its_base_own():
    assert "support@desk.example" not in AddressSet.of(["support+desk@desk.example"])
    assert "support+desk@desk.example" in AddressSet.of(["support+desk@desk.example"])


# -- every stage agrees: a sender written Support@BÜCHER.example is the help desk itself -------

WRITTEN = ["Support@BÜCHER.example", "support@bücher.example.", " SUPPORT@xn--bcher-kva.example"]


@pytest.mark.parametrize("written", WRITTEN)
def test_the_router_leaves_an_own_address_out_of_the_recipients(written):
    book = InMemoryRequestBook()
    msg = mail(to=[Address(email=written), Address(email="bob@example.org")])

    deliver(book, msg, own=AddressSet.of(OWN))

    [kept] = book.requests[book.request_of(msg)].mails
    assert kept["to"] == [{"name": "", "email": "bob@example.org"}]


@pytest.mark.parametrize("written", WRITTEN)
def test_the_validator_never_tells_an_own_address_about_a_stripped_file(written):
    blobs = InMemoryBlobStore()
    exe = Attachment(
        filename="setup.exe",
        content_type="application/x-msdownload",
        size=4,
        sha256=blobs.put(b"MZ\x90\x00"),
    )
    parsed = MailParsed(
        mail_id="m-1",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="1"),
        raw_blob="0" * 64,
        mail=ParsedMail(message_id="<m1@x>", from_=Address(email=written), attachments=[exe]),
    )
    notices = StripNotices.from_settings(
        NotificationSettings(support_reps=["reps@desk.example"]), own_addresses=OWN
    )
    policy = AttachmentPolicy(1 << 20, frozenset({"exe"}), frozenset())

    out = validate(
        parsed, policy=policy, notices=notices, blobs=blobs, sniff=lambda _: "text/plain"
    )

    told = [to for n in out if isinstance(n, Notify) for to in n.to]
    assert told and written not in told  # the reps are told, the help desk itself is not


@pytest.mark.parametrize("written", WRITTEN)
def test_the_notifier_never_mails_an_own_address(written):
    outbox, sender = InMemoryOutbox(), RecordingSender()
    msg = Notify(
        mail_id="m-1",
        helpdesk="default",
        key="m-1:attachment_stripped:email:sender",
        topic="attachment_stripped",
        channel="email",
        to=[written],
        subject="Re: x",
        body="removed",
    )

    notify(
        msg,
        outbox=outbox,
        outgoing=Outgoing(sender=sender),
        own_addresses=AddressSet.of(OWN),
        now=NOW,
    )

    assert sender.sent == []


def test_the_router_takes_its_own_addresses_from_every_mailbox_of_the_help_desk():
    def box(name: str, helpdesk: str, addresses: list[str]) -> ConfiguredMailbox:
        settings = MailboxSettings(name=name, protocol="maildir", path="/m", addresses=addresses)
        return ConfiguredMailbox(settings, helpdesk)

    boxes = [box("a", "default", ["Support@Bücher.example"]), box("b", "other", ["x@y.example"])]

    own = own_addresses(boxes, "default")

    assert "support@xn--bcher-kva.example." in own and "x@y.example" not in own
