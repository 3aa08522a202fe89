"""Parse + validate over the shared corpus, beside bare stdlib parsing of the same mails.

Both run in this process, one round of the corpus after the other, and are timed in CPU
seconds: on a shared machine, a load that comes and goes would otherwise land on one side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

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
    ours, bare = rates(mails, [_parse_and_validate(), stdlib_parse])
    what = f"corpus ({len(mails)} mails): parse + validate, mails/s"
    results.figures.append(Figure(what, BASELINE, "mails/s", ours, bare))


def corpus_files() -> list[Path]:
    skip = {"LICENSE", "README.md", ".gitattributes"}
    return [p for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.name not in skip]


def _corpus() -> list[bytes]:
    return [p.read_bytes() for p in corpus_files()]


def rates(mails: list[bytes], handlers: list[Callable[[bytes], object]]) -> list[float]:
    """Mails per CPU second of each handler, over ``ROUNDS`` rounds each, taken in turn."""
    seconds = [0.0] * len(handlers)
    for handle in handlers:  # once first: imports and caches are no part of the figure
        _round(mails, handle)
    for _ in range(ROUNDS):
        for i, handle in enumerate(handlers):
            seconds[i] += _round(mails, handle)
    return [ROUNDS * len(mails) / s for s in seconds]


def _round(mails: list[bytes], handle: Callable[[bytes], object]) -> float:
    start = time.process_time()
    for raw in mails:
        handle(raw)
    return time.process_time() - start


def stdlib_parse(raw: bytes) -> None:
    """The baseline: ``policy.default`` parse, every leaf part's payload decoded."""
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
