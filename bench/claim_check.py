"""Claim check: how big the queue messages are that carry one big mail.

The poller's ``mail.fetched`` and the parser's real ``mail.parsed`` output are serialised
as the publisher serialises them; bodies and attachments should stay behind in the store.
"""

from __future__ import annotations

from bench.mailgen import make_big_mail
from bench.report import Figure, Results
from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from services.parser.handler import parse
from services.runtime.testing import InMemoryBlobStore

ATTACHMENT = 3_800_000  # base64 makes a mail of about 5 MB of it


def measure(results: Results) -> None:
    raw = make_big_mail(ATTACHMENT)
    blobs = InMemoryBlobStore()
    source = SourceRef(mailbox="bench", ref="big-00000")
    fetched = MailFetched(
        mail_id=mail_id(source.mailbox, source.ref),
        helpdesk="bench",
        source=source,
        raw_blob=blobs.put(raw),
        size=len(raw),
    )
    messages = [fetched, *parse(fetched, blobs=blobs)]
    sizes = {m.kind: len(m.model_dump_json(by_alias=True).encode()) for m in messages}
    results.figures += [_figure(kind, size, len(raw)) for kind, size in sizes.items()]
    results.details["claim_check"] = {"raw_bytes": len(raw), "message_bytes": sizes}


def _figure(kind: str, size: int, raw: int) -> Figure:
    return Figure(
        f"claim check: `{kind}` message body", "the raw mail it carries", "bytes", size, raw
    )
