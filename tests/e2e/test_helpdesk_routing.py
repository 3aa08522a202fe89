"""Help-desk routing through the real ``mailroom`` command, embedded and on RabbitMQ+PostgreSQL.

Two help desks: ``acme`` with three Maildir mailboxes (``support`` with an alias, ``billing``,
and ``sales``, where only allowlisted senders open requests) and ``globex`` with one. Each
test writes mails for the purpose into the Maildirs, lets Mailroom route them, and reads the
result through ``--json``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import Mailroom

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
DATE = "Tue, 03 Mar 2026 09:00:00 +0000"
MAILBOXES = ("support", "billing", "sales", "globex")


def settings(room: Mailroom, outgoing: dict[str, Any] | None = None) -> dict[str, Any]:
    def box(name: str, addresses: list[str], **more: Any) -> dict[str, Any]:
        path = room.workdir / name
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return {
            "name": name,
            "protocol": "maildir",
            "path": str(path),
            "addresses": addresses,
            "fetch_every_minutes": 0.05,
            **more,
        }

    acme: dict[str, Any] = {
        "id": "acme",
        "notifications": {"support_reps": ["reps@acme.example"], "admins": ["it@acme.example"]},
        "mailboxes": [
            box("support", ["support@acme.example", "help@acme.example"]),
            box("billing", ["billing@acme.example"]),
            box(
                "sales",
                ["sales@acme.example"],
                new_requests={
                    "enabled": False,
                    "allow": ["heather@zylker.com", "*@bücher.example"],
                },
            ),
        ],
    }
    if outgoing:
        acme["outgoing"] = outgoing
    globex = {"id": "globex", "mailboxes": [box("globex", ["desk@globex.example"])]}
    return {"helpdesks": [acme, globex]}


@pytest.fixture
def room(mailroom: Mailroom) -> Mailroom:
    mailroom.apply(settings(mailroom))
    return mailroom


def mail(
    message_id: str,
    subject: str,
    *headers: str,
    sender: str | None = "Ann Lee <ann@customer.example>",
    to: str = "support@acme.example",
    body: str = "Hello, the printer on the 3rd floor is jammed again.",
) -> bytes:
    """A plain-text mail; ``headers`` are extra ``Name: value`` lines."""
    lines = [f"From: {sender}"] if sender is not None else []
    lines += [f"To: {to}", f"Subject: {subject}", f"Message-ID: {message_id}", f"Date: {DATE}"]
    lines += [*headers, "MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"']
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def drop(room: Mailroom, mailbox: str, key: str, raw: bytes) -> None:
    """Deliver ``raw`` into ``mailbox`` under the Maildir key ``key``."""
    (room.workdir / mailbox / "new" / key).write_bytes(raw)


def settle(room: Mailroom, total: int) -> None:
    """Let Mailroom route the mails written so far, ``total`` of them since the start."""
    if room.embedded:
        room.cli("run", "--once")
    elif not room.workers:
        room.start_workers()
    room.wait_for(lambda: sum(outcomes(room).values()) >= total, what=f"{total} routed mails")


def outcomes(room: Mailroom, mailbox: str | None = None) -> Counter[str]:
    """How many mails ended in each outcome (of ``mailbox``, or of every mailbox)."""
    found: Counter[str] = Counter()
    for box in room.json("mailbox", "list"):
        if mailbox in (None, box["name"]):
            found.update(box["outcomes"])
    return found


def requests_of(room: Mailroom, helpdesk: str) -> list[dict[str, Any]]:
    return [r for r in room.json("requests", "list") if r["helpdesk"] == helpdesk]


def refs(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["source"]["mailbox"], m["source"]["ref"]) for m in request["mails"]]


def rejected(room: Mailroom) -> dict[str, dict[str, Any]]:
    """The rejected-mail listing, by Maildir key."""
    return {r["ref"]: r for r in room.json("requests", "rejected")}


def test_one_mail_in_two_mailboxes_and_an_alias_opens_one_request_joined_from_any_mailbox(
    room: Mailroom,
) -> None:
    # Given one mail sent to both mailboxes of the help desk, and to the support alias
    first = mail(
        "<a1@customer.example>",
        "Printer jammed",
        "Cc: billing@Acme.example, HELP@acme.example, Dana Fox <dana@customer.example>",
        to="Support <SUPPORT@acme.example>, bob@customer.example",
    )
    drop(room, "support", "a1-via-support", first)
    drop(room, "support", "a1-via-help", first)
    drop(room, "billing", "a1", first)

    # When Mailroom fetches all three copies
    settle(room, 3)

    # Then there is one request; the other two copies are duplicates
    [request] = requests_of(room, "acme")
    assert len(request["mails"]) == 1
    assert outcomes(room) == Counter(request_created=1, duplicate=2)
    # And the help desk's own addresses are not kept among the recipients
    kept = request["mails"][0]
    assert kept["to"] == [{"name": "", "email": "bob@customer.example"}]
    assert kept["cc"] == [{"name": "Dana Fox", "email": "dana@customer.example"}]

    # When replies arrive in either mailbox: by In-Reply-To, by tag, by the old tag form
    number = request["id"]
    drop(
        room,
        "billing",
        "a2",
        mail("<a2@c.example>", "Re: Printer", "In-Reply-To: <a1@customer.example>"),
    )
    drop(room, "support", "a3", mail("<a3@c.example>", f"AW: WG: [Request ##{number}##] Printer"))
    drop(room, "support", "a4", mail("<a4@c.example>", f"RE: [request #{number}] Printer"))
    settle(room, 6)

    # Then each joins the one request
    [request] = requests_of(room, "acme")
    assert sorted(refs(request)[1:]) == [("billing", "a2"), ("support", "a3"), ("support", "a4")]
    assert outcomes(room)["conversation_added"] == 3


def test_a_tag_or_reply_naming_another_help_desks_request_opens_a_request_there(
    room: Mailroom,
) -> None:
    drop(room, "support", "g1", mail("<g1@customer.example>", "Printer jammed"))
    settle(room, 1)
    [acme] = requests_of(room, "acme")

    # When globex gets a mail tagged with acme's request, answering acme's mail
    tagged = mail(
        "<g2@customer.example>",
        f"Re: [Request ##{acme['id']}##] Printer jammed",
        "In-Reply-To: <g1@customer.example>",
        to="desk@globex.example",
    )
    drop(room, "globex", "g2", tagged)
    settle(room, 2)

    # Then globex has a request of its own, and acme's request is untouched
    [globex] = requests_of(room, "globex")
    assert globex["id"] != acme["id"]
    assert refs(globex) == [("globex", "g2")]
    assert refs(requests_of(room, "acme")[0]) == [("support", "g1")]


def test_with_new_requests_limited_only_allowed_senders_open_requests_and_the_rest_are_listed(
    room: Mailroom,
) -> None:
    # Given mails to the sales mailbox, which takes new requests from its allowlist only
    to = "sales@acme.example"
    mails = {
        "s1": mail("<s1@z.example>", "Quote", sender="heather@ZYLKER.com", to=to),
        "s2": mail("<s2@b.example>", "Books", sender="ann@xn--bcher-kva.example", to=to),
        "s3": mail("<s3@e.example>", "Cheap toner", sender="eve@example.org", to=to),
        # From without an address: the Sender is who sent it; else the Reply-To
        "s4": mail(
            "<s4@z.example>",
            "Via assistant",
            "Sender: Heather Lee <heather@zylker.com>",
            sender="Heather Lee",
            to=to,
        ),
        "s5": mail("<s5@m.example>", "Offer", "Reply-To: mallory@example.net", sender=None, to=to),
        "s6": mail("<s6@n.example>", "Nobody", sender=None, to=to),
    }
    for key, raw in mails.items():
        drop(room, "sales", key, raw)

    settle(room, 6)

    # Then the allowed senders, by From or by Sender, have requests
    requesters = {r["mails"][0]["source"]["ref"]: r["requester"] for r in requests_of(room, "acme")}
    assert requesters == {
        "s1": {"name": "", "email": "heather@ZYLKER.com"},
        "s2": {"name": "", "email": "ann@xn--bcher-kva.example"},
        "s4": {"name": "Heather Lee", "email": "heather@zylker.com"},
    }
    # And the others are listed as rejected, with who sent them and why
    listed = rejected(room)
    assert set(listed) == {"s3", "s5", "s6"}
    assert listed["s3"]["mailbox"] == "sales"
    assert listed["s3"]["from"] == {"name": "", "email": "eve@example.org"}
    assert listed["s3"]["subject"] == "Cheap toner"
    assert listed["s3"]["at"]
    assert "eve@example.org is not on the allowlist" in listed["s3"]["reason"]
    assert "mallory@example.net is not on the allowlist" in listed["s5"]["reason"]
    assert "no sender address" in listed["s6"]["reason"]

    # When someone not on the list answers an allowed sender's request
    reply = mail(
        "<s7@e.example>",
        "Re: Quote",
        "In-Reply-To: <s1@z.example>",
        sender="eve@example.org",
        to=to,
    )
    drop(room, "sales", "s7", reply)
    settle(room, 7)

    # Then the reply is accepted
    [quote] = [r for r in requests_of(room, "acme") if r["subject"] == "Quote"]
    assert refs(quote) == [("sales", "s1"), ("sales", "s7")]


def test_bad_input_routes_without_a_crash(room: Mailroom) -> None:
    # Given a first mail, and one with no sender address at all
    drop(room, "support", "b1", mail("<b1@customer.example>", "VPN drops"))
    drop(
        room,
        "support",
        "b2",
        mail("<b2@x.example>", "Scanner output", sender="undisclosed-recipients:;"),
    )
    settle(room, 2)
    [vpn] = [r for r in requests_of(room, "acme") if r["subject"] == "VPN drops"]

    # When mails come with thousands of References, and a tag with a number of no request
    noise = " ".join(f"<n{i}@thread.example>" for i in range(2000))
    newest_last = f"References: {noise} <b1@customer.example>"
    oldest_first = f"References: <b1@customer.example> {noise}"
    drop(room, "support", "b3", mail("<b3@customer.example>", "Re: VPN drops", newest_last))
    drop(room, "support", "b4", mail("<b4@customer.example>", "Keyboard broken", oldest_first))
    drop(room, "support", "b5", mail("<b5@customer.example>", "[Request ##99999999999##] Mouse"))
    settle(room, 5)

    # Then the mail without a sender opened a request for an unknown requester
    by_subject = {r["subject"]: r for r in requests_of(room, "acme")}
    assert by_subject["Scanner output"]["requester"] == {"name": "unknown", "email": ""}
    # And the newest of thousands of references threads; one only far back does not
    assert refs(by_subject["VPN drops"]) == [("support", "b1"), ("support", "b3")]
    assert refs(by_subject["Keyboard broken"]) == [("support", "b4")]
    assert refs(by_subject["[Request ##99999999999##] Mouse"]) == [("support", "b5")]
    assert vpn["id"] == by_subject["VPN drops"]["id"]
    assert room.json("dlq", "list") == []


def test_mailrooms_own_notification_coming_back_is_rejected_but_an_auto_reply_joins(
    room: Mailroom,
) -> None:
    drop(room, "support", "n1", mail("<n1@customer.example>", "Laptop will not boot"))
    settle(room, 1)

    # When a mail with the notifier's marks comes back into the mailbox, answering that mail
    ours = mail(
        "<notify.0123@acme.example>",
        "Re: Laptop will not boot",
        "In-Reply-To: <n1@customer.example>",
        "Auto-Submitted: auto-generated",
        "X-Mailroom-Notification: n1:attachment_stripped:email:sender",
        sender="support@acme.example",
        to="ann@customer.example",
    )
    drop(room, "support", "n2", ours)
    # And the customer's out-of-office answers it too
    away = mail(
        "<n3@customer.example>",
        "Automatic reply: Laptop will not boot",
        "In-Reply-To: <n1@customer.example>",
        "Auto-Submitted: auto-replied",
    )
    drop(room, "support", "n3", away)
    settle(room, 3)

    # Then Mailroom's own mail is rejected with the reason; the auto-reply joins the request
    [request] = requests_of(room, "acme")
    assert refs(request) == [("support", "n1"), ("support", "n3")]
    assert "own notification came back" in rejected(room)["n2"]["reason"]


def test_a_bounce_about_a_mail_on_a_request_is_a_note_and_other_bounces_open_nothing(
    room: Mailroom,
) -> None:
    drop(room, "support", "d1", mail("<d1@customer.example>", "Invoice question"))
    settle(room, 1)

    # When a real-world sendmail bounce names that mail in its returned headers
    report = (CORPUS / "mikel-mail/multipart_report_emails/report_530.eml").read_bytes()
    about_d1 = report.replace(
        b"\nMessage-Id: <200712232303.lBNN3jDq002941@mail12.rrrr.com.au>",
        b"\nMessage-Id: <d1@customer.example>",
    ).replace(b"<200712232303.lBNN3rDp003436@mail12.rrrr.com.au>", b"<dsn-d2@mx.example>")
    assert about_d1.count(b"<d1@customer.example>") == 1
    drop(room, "support", "d2", about_d1)
    # And two bounces about mail Mailroom never sent arrive (sendmail; Postfix via Proofpoint)
    drop(room, "support", "d3", report)
    drop(room, "support", "d4", (CORPUS / "mimekit/messages/bounce.txt").read_bytes())
    settle(room, 4)

    # Then the first is a note on the request, saying who failed and why
    [request] = requests_of(room, "acme")
    assert refs(request) == [("support", "d1"), ("support", "d2")]
    note = request["mails"][1]
    assert note["kind"] == "bounce" and request["mails"][0]["kind"] == "mail"
    assert note["note"] == (
        "Delivery report about a mail of this request: delivery to edwin@zzzzzzz.com failed "
        "(status 5.3.0; SMTP; 553 5.3.0 <edwin@zzzzzzz.com>... Unknown E-Mail Address)"
    )
    assert note["delivery_report"]["original_message_id"] == "<d1@customer.example>"
    # And the others are rejected, naming the mail they are about
    listed = rejected(room)
    assert set(listed) == {"d3", "d4"}
    assert (
        "<200712232303.lBNN3jDq002941@mail12.rrrr.com.au>, which Mailroom did not send"
        in (listed["d3"]["reason"])
    )
    assert "which Mailroom did not send" in listed["d4"]["reason"]


def test_answers_and_bounces_to_a_sent_notification_find_its_request(
    mailroom: Mailroom, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    collector, port = smtp_server
    outgoing = {"host": "127.0.0.1", "port": port, "security": "none"}
    mailroom.apply(settings(mailroom, outgoing | {"from_address": "support@acme.example"}))
    room = mailroom

    # Given a mail whose attachment is stripped: Mailroom tells the sender by email
    drop(room, "support", "e1", with_exe("<e1@customer.example>", "Driver installer"))
    settle(room, 1)
    room.wait_for(lambda: any(m["To"] == "ann@customer.example" for m in collector.mails()))
    [sent] = [e for e in collector.envelopes if b"To: ann@customer.example" in e.content]
    notice_id = _header(sent.content, b"Message-ID")

    # When the customer answers it (In-Reply-To names only the notification), it bounces
    # for another recipient, and the notification itself comes back into the mailbox
    answer = mail("<e2@customer.example>", "Re: Driver installer", f"In-Reply-To: {notice_id}")
    drop(room, "support", "e2", answer)
    drop(room, "support", "e3", _bounce_about(notice_id))
    drop(room, "support", "e4", sent.content)
    settle(room, 4)

    # Then the answer and the bounce are on the request, and the notification is rejected
    [request] = requests_of(room, "acme")
    assert refs(request) == [("support", "e1"), ("support", "e2"), ("support", "e3")]
    note = request["mails"][2]["note"]
    assert note.startswith("Delivery report about notification ")
    assert "delivery to ann@customer.example failed (status 5.1.1; smtp; 550 5.1.1" in note
    assert "own notification" in rejected(room)["e4"]["reason"]


def with_exe(message_id: str, subject: str) -> bytes:
    """A mail with ``setup.exe`` attached, which the help desk's attachment rules strip."""
    return (
        f"From: Ann Lee <ann@customer.example>\r\nTo: support@acme.example\r\n"
        f"Subject: {subject}\r\nMessage-ID: {message_id}\r\nDate: {DATE}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe installer is attached.\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="setup.exe"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAA=\r\n--b--\r\n"
    ).encode()


def _header(raw: bytes, name: bytes) -> str:
    line = next(x for x in raw.splitlines() if x.lower().startswith(name.lower() + b":"))
    return line.split(b":", 1)[1].strip().decode()


def _bounce_about(message_id: str) -> bytes:
    """A Postfix bounce of the mail ``message_id`` sent to ann@customer.example."""
    return (
        "From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\r\n"
        "To: support@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce-e3@mx.customer.example>\r\nDate: {DATE}\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message"
        " could not be delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        "Final-Recipient: rfc822; ann@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <ann@customer.example>: Recipient address rejected:\r\n"
        "    User unknown in virtual mailbox table\r\n"
        "--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@acme.example\r\nTo: ann@customer.example\r\nMessage-ID: {message_id}\r\n"
        "Subject: Re: Driver installer\r\n"
        "--r--\r\n"
    ).encode()
