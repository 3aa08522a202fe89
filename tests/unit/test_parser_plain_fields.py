"""Fields read without the stdlib's full header parser read exactly as through it.

Thousands of field values are made from the pieces mail is written with (plain and not),
each read both ways; wherever the quick reading takes a value, the two readings agree.
"""

from __future__ import annotations

import random
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import Policy

import pytest

from services.parser.addresses import addresses_in, long_field_entries, plain_addresses
from services.parser.headers import LenientPolicy, date_of
from services.parser.light_policy import LightPolicy

ROUNDS = 2000
ATOMS = ["ann", "Lee", "o'Neil", "x-y", "a+b", "j_doe", "42", "A=B", "q?r", "#1", "~z", "{x}"]
DOMAINS = ["example.com", "mail.example.org", "localhost", "a-b.c_d", "EXAMPLE.COM"]
QUOTED = ['"Lee, Ann"', '""', '"a  b"', '"x (y)"', '"<ann@x>"', '"a\\"b"', '"é"']
ODD = [".", "(c)", "=?utf-8?q?=C3=A9?=", "\\", ";", ":", "[", "é", "\x7f", "\t", "  ", "<", ">"]


def address_value(rnd: random.Random) -> str:
    def addr() -> str:
        local = ".".join(rnd.choice(ATOMS) for _ in range(rnd.randint(1, 2)))
        return f"{local}@{rnd.choice(DOMAINS)}"

    def name() -> str:
        words = [rnd.choice(ATOMS + QUOTED) for _ in range(rnd.randint(0, 3))]
        return rnd.choice([" ", "  ", "\t"]).join(words)

    def mailbox() -> str:
        if rnd.random() < 0.4:
            return addr()
        return f"{name()}{rnd.choice([' ', '', '  '])}<{addr()}>"

    value = rnd.choice([", ", ",", " , ", ",\t"]).join(mailbox() for _ in range(rnd.randint(1, 3)))
    if rnd.random() < 0.3:  # a near miss: one odd piece somewhere
        at = rnd.randrange(len(value) + 1)
        value = value[:at] + rnd.choice(ODD) + value[at:]
    return rnd.choice(["", " "]) + value + rnd.choice(["", " ", ","])


def full_reading(value: str) -> tuple[list[tuple[str, str]], int]:
    header = policy.default.header_factory("To", value)
    pairs = [(a.display_name, a.addr_spec) for a in header.addresses]  # type: ignore[attr-defined]
    return pairs, len(header.defects)


def test_a_plain_address_field_reads_as_through_the_full_parser() -> None:
    rnd = random.Random(14)
    taken = 0
    for _ in range(ROUNDS):
        value = address_value(rnd)
        quick = plain_addresses(value)
        if quick is None:
            continue
        taken += 1
        assert (quick, 0) == full_reading(value), value
    assert taken > ROUNDS // 3  # the common forms are taken


@pytest.mark.parametrize(
    "value",
    ['"Lee, Ann" <ann@example.com>', "ann@example.com (Ann)", "Ann.Lee <a@b.c>",
     "=?utf-8?q?x?= <a@b>", "undisclosed-recipients:;", "", "Ann <ann@example.com",
     "ann@example.com."],
)  # fmt: skip
def test_only_plain_forms_are_read_quickly(value: str) -> None:
    quick = plain_addresses(value)

    assert quick is None or value == '"Lee, Ann" <ann@example.com>'
    if quick is not None:
        assert quick == [("Lee, Ann", "ann@example.com")]


def test_a_long_field_is_cut_at_the_commas_between_its_entries() -> None:
    value = '"Lee, Ann" <ann@x.org>, bob@x.org (Bob, B), <c@x.org>,, "d" <d@x.org>'

    assert long_field_entries(value) == [
        '"Lee, Ann" <ann@x.org>',
        " bob@x.org (Bob, B)",
        " <c@x.org>",
        ' "d" <d@x.org>',
    ]
    assert long_field_entries("team: a@x.org, b@x.org;") is None
    assert addresses_in("=?utf-8?q?x?= " * 50 + "<ann@x.org> and bob@x.org") == [
        "ann@x.org",
        "bob@x.org",
    ]


def mime_value(rnd: random.Random) -> str:
    token = lambda: rnd.choice(  # noqa: E731
        ["text", "plain", "multipart", "x-foo", "a.b", "UTF-8", "7bit", "base64", "Base64",
         "attachment", "inline", "boundary", "start", "filename", "b*c", "quoted-printable"]
    )  # fmt: skip
    value = rnd.choice([f"{token()}/{token()}", token()])
    for _ in range(rnd.randint(0, 3)):
        quoted = f'"{rnd.choice(["----=_Part_1", "a b", "", "x;y", "é", "a=b"])}"'
        param = f"{token()}{rnd.choice(['=', ' = ', '*='])}{rnd.choice([token(), quoted])}"
        value += rnd.choice(["; ", ";", " ;\t", ";\r\n "]) + param
    if rnd.random() < 0.3:
        at = rnd.randrange(len(value) + 1)
        value = value[:at] + rnd.choice(ODD + ["\r\n ", '"']) + value[at:]
    return value + rnd.choice(["", " ", ";", "; "])


def readings(policy: Policy, field: str) -> tuple[object, ...]:
    """What the parser asks of a part's MIME fields, on a part parsed with ``policy``."""
    part = BytesParser(policy=policy).parsebytes(f"{field}\r\n\r\nQUJD\r\n".encode())
    assert isinstance(part, EmailMessage)
    return (
        part.get_content_type(),
        part.get_params(),
        part.get_params(header="content-disposition"),
        part.get_boundary(),
        part.get_param("start"),
        part.get_content_disposition(),
        part.is_attachment(),
        part.get_payload(decode=True),
    )


@pytest.mark.parametrize(
    "name", ["Content-Type", "Content-Disposition", "Content-Transfer-Encoding"]
)
def test_a_plain_mime_field_reads_as_through_the_full_policy(name: str) -> None:
    rnd = random.Random(name)
    for _ in range(ROUNDS):
        field = f"{name}: {mime_value(rnd)}"
        assert readings(LightPolicy(), field) == readings(LenientPolicy(), field), field


@pytest.mark.parametrize(
    "value",
    ["Fri, 3 Nov 2017 12:00:00 -0800", "3 Nov 2017 12:00 +0000", "Mon, 1 Jan 2024 10:00:00 -0000",
     "Tue, 31 Feb 2017 12:00:00 +0100", "Fri, 3 Nov 2017 12:00:00 +9999", "yesterday", "",
     "Fri, 3 Nov 99999 12:00:00 GMT", "Fri, 3 Nov 17 12:00:00 EST", "Fri 3 Nov 2017 25:61:00"],
)  # fmt: skip
def test_a_date_reads_as_through_the_full_policy(value: str) -> None:
    header = policy.default.header_factory("Date", value)

    when, defects = date_of(value)

    assert when == header.datetime  # type: ignore[attr-defined]
    assert [str(d) for d in defects] == [str(d) for d in header.defects]
    assert [type(d) for d in defects] == [type(d) for d in header.defects]
