"""Parse + validate over the shared corpus, beside bare stdlib parsing of the same mails."""

from __future__ import annotations

import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser

from bench.procs import REPO
from bench.report import Figure, Results
from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from contracts.settings import AttachmentSettings, NotificationSettings
from services.parser.handler import parse
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore
from services.validator.adapters import LibmagicSniffer
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

CORPUS = REPO.parent / "shared" / "corpus"
ROUNDS = 5
BASELINE = "stdlib email parse of the same mails (policy.default, every part decoded)"


def measure(results: Results) -> None:
    mails = _corpus()
    if not mails:
        results.notes.append(f"PROBLEM: no corpus at {CORPUS}")
        return
    ours = _rate(mails, _parse_and_validate())
    bare = _rate(mails, _stdlib_parse)
    what = f"corpus ({len(mails)} mails): parse + validate, mails/s"
    results.figures.append(Figure(what, BASELINE, "mails/s", ours, bare))


def _corpus() -> list[bytes]:
    skip = {"LICENSE", "README.md"}
    return [p.read_bytes() for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.name not in skip]


def _rate(mails: list[bytes], handle: Callable[[bytes], object]) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for raw in mails:
            handle(raw)
    return ROUNDS * len(mails) / (time.perf_counter() - start)


def _stdlib_parse(raw: bytes) -> None:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    for part in message.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)


def _parse_and_validate() -> Callable[[bytes], object]:
    blobs = InMemoryBlobStore()
    sniff = LibmagicSniffer()
    attachments = AttachmentPolicy.from_settings(AttachmentSettings())
    notices = StripNotices.from_settings(NotificationSettings())

    def handle(raw: bytes) -> object:
        fetched = MailFetched(
            mail_id=mail_id("corpus", str(len(raw))),
            helpdesk="bench",
            source=SourceRef(mailbox="corpus", ref="x"),
            raw_blob=blobs.put(raw),
            size=len(raw),
        )
        try:
            [parsed] = parse(fetched, blobs=blobs)
        except MailError:
            return None  # a rejected mail costs its parse, as in the pipeline
        return validate(parsed, policy=attachments, notices=notices, blobs=blobs, sniff=sniff)

    return handle
