"""The parser over the whole shared corpus of real-world mail, and over damaged copies of it.

Every mail ends as a ``MailParsed`` or as a ``MailError`` whose message says why; nothing
else may escape the parser, whatever the bytes.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from contracts.mail import MailFetched, MailParsed, SourceRef
from services.parser.handler import parse
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
NOT_MAIL = {"LICENSE", "README.md", ".gitattributes"}
# A dozen mails of different build: Outlook TNEF, S/MIME, nested and forwarded mail,
# encoded names, reports, 8-bit headers, a huge header, uuencode, MHTML.
FUZZED = [
    "mimekit/tnef/ukr.eml",
    "mimekit/smime/thunderbird-signed.txt",
    "mimekit/messages/rfc2060.txt",
    "mimekit/messages/delivery-status.txt",
    "mimekit/messages/feedback-report.txt",
    "mimekit/messages/multipart-related-mhtml.txt",
    "mikel-mail/attachment_emails/attachment_message_rfc822_inline_image.eml",
    "mikel-mail/multi_charset/japanese_attachment_long_name.eml",
    "mikel-mail/error_emails/content_transfer_encoding_x_uuencode.eml",
    "mikel-mail/error_emails/encoding_madness.eml",
    "mikel-mail/multipart_report_emails/multipart_report_multiple_status.eml",
    "mikel-mail/mime_emails/raw_email_with_nested_attachment.eml",
]
MIME_TOKENS = [b"=?", b"?=", b"\r\n", b"\r\n\r\n", b"--", b";", b'"', b"*0*=", b"\xff", b":"]


def corpus_files() -> list[Path]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in NOT_MAIL)
    assert files, f"no corpus at {CORPUS}"
    return files


def outcome(raw: bytes) -> MailParsed | MailError:
    """Parse ``raw``: the parsed mail, or the MailError that rejected it. Anything else
    raised is a failure of the test."""
    blobs = InMemoryBlobStore()
    msg = MailFetched(
        mail_id="m-1",
        helpdesk="default",
        source=SourceRef(mailbox="corpus", ref="1"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )
    try:
        [out] = parse(msg, blobs=blobs)
    except MailError as exc:
        return exc
    assert isinstance(out, MailParsed)
    out.model_dump_json()  # every string in it is valid Unicode
    return out


def is_sentence(message: str) -> bool:
    return message == message.strip() and message[:1].isalpha() and len(message.split()) >= 4


def test_every_corpus_mail_is_parsed_or_rejected_with_a_reason() -> None:
    parsed, rejected = 0, Counter[str]()
    for path in corpus_files():
        result = outcome(path.read_bytes())
        if isinstance(result, MailError):
            assert is_sentence(str(result)), f"{path}: {result!r}"
            rejected[f"{path.relative_to(CORPUS)}: {result}"] += 1
        else:
            parsed += 1

    print(f"\ncorpus: {parsed} parsed, {sum(rejected.values())} rejected")
    for reason in sorted(rejected):
        print(f"  rejected {reason}")
    assert parsed + sum(rejected.values()) == len(corpus_files())
    assert parsed > 9 * sum(rejected.values())


def damaged(raw: bytes, rnd: random.Random) -> list[bytes]:
    """Copies of ``raw`` cut short at several places, and with random bytes changed."""
    cuts = [raw[: len(raw) * k // 7] for k in range(1, 7)]
    flipped = []
    for _ in range(4):
        data = bytearray(raw)
        for _ in range(max(1, len(data) // 150)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        flipped.append(bytes(data))
    inserted = bytearray(raw)
    for _ in range(8):
        inserted[rnd.randrange(len(inserted)) : 0] = rnd.choice(MIME_TOKENS)
    return [*cuts, *flipped, bytes(inserted)]


@pytest.mark.parametrize("name", FUZZED)
def test_damaged_copies_of_corpus_mail_never_raise_anything_but_mail_error(name: str) -> None:
    rnd = random.Random(name)

    results = [outcome(raw) for raw in damaged((CORPUS / name).read_bytes(), rnd)]

    errors = [str(r) for r in results if isinstance(r, MailError)]
    assert all(is_sentence(e) for e in errors), errors
