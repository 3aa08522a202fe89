"""One mail through the parser and then the validator, as their workers would run it.

A mail ends in a defined way when the parser rejects it with a ``MailError`` (it is
dead-lettered with that reason), or when both stages hand on messages that survive the trip
through the queue (JSON out, contract in). Anything else escaping is a crash; a mail that
takes the two stages more than a second is a failure too: a mailbox full of them would stall
the pipeline.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

from contracts.base import Envelope
from contracts.mail import MailFetched, MailParsed, SourceRef
from contracts.settings import AttachmentSettings, NotificationSettings
from services.parser.handler import parse
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore
from services.validator.adapters import LibmagicSniffer
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

E = TypeVar("E", bound=Envelope)

SLOW_SECONDS = 1.0
#: A slow mail is timed this many times in all; the fastest run counts, so a pause of the
#: machine alone does not fail it.
TIMINGS = 3
CRASHES = Path(__file__).resolve().parent / "crashes"

POLICY = AttachmentPolicy.from_settings(AttachmentSettings(max_size_mb=1))
NOTICES = StripNotices.from_settings(
    NotificationSettings(support_reps=["reps@example.com"]), own_addresses=["help@example.com"]
)


@cache
def sniffer() -> Callable[[bytes], str]:
    return LibmagicSniffer()


def run_stages(raw: bytes) -> list[Envelope] | MailError:
    """The messages the parser and the validator hand on for ``raw``, each read back as the
    next stage reads it; or the ``MailError`` that rejects the mail. Anything else raised is
    a crash and propagates."""
    blobs = InMemoryBlobStore()
    fetched = MailFetched(
        mail_id="fuzz-1",
        helpdesk="default",
        source=SourceRef(mailbox="fuzz", ref="1"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )
    try:
        [parsed] = parse(fetched, blobs=blobs)
        assert isinstance(parsed, MailParsed)
        parsed = through_queue(parsed)
        outputs = validate(parsed, policy=POLICY, notices=NOTICES, blobs=blobs, sniff=sniffer())
    except MailError as exc:
        return exc
    return [parsed, *map(through_queue, outputs)]


def through_queue(message: E) -> E:
    """``message`` as the next stage gets it: its JSON body read back into its contract."""
    body = message.model_dump_json(by_alias=True)
    return type(message).model_validate_json(body)


@dataclass(frozen=True)
class Outcome:
    """How a mail ended: ``parsed`` (and validated), ``rejected`` (the ``MailError``'s
    reason in ``detail``), or the failures ``crash`` and ``slow``."""

    kind: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind in ("crash", "slow")

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


def outcome_of(raw: bytes) -> Outcome:
    """How ``raw`` ends; a mail over ``SLOW_SECONDS`` is timed again, up to ``TIMINGS``
    times in all, and is slow only if no run was fast enough."""
    try:
        result, took = _timed(raw)
        for _ in range(TIMINGS - 1):
            if took <= SLOW_SECONDS:
                break
            took = min(took, _timed(raw)[1])
    except Exception as exc:  # noqa: BLE001 - every escaping exception is a finding
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{Path(where.filename).name}:{where.lineno}"
        return Outcome("crash", f"{type(exc).__name__}: {str(exc)[:300]} (at {place})")
    if took > SLOW_SECONDS:
        return Outcome("slow", f"the parser and the validator took {took:.2f} s")
    return Outcome("rejected", str(result)) if isinstance(result, MailError) else Outcome("parsed")


def _timed(raw: bytes) -> tuple[list[Envelope] | MailError, float]:
    began = time.perf_counter()
    result = run_stages(raw)
    return result, time.perf_counter() - began


def save(raw: bytes, failure: str, how: str, folder: Path = CRASHES) -> Path:
    """Keep ``raw`` as ``<sha256 prefix>.eml`` in ``folder``, with a ``.txt`` beside it that
    says what failed and how the mail was made."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:16]}.eml"
    path.write_bytes(raw)
    path.with_suffix(".txt").write_text(f"{failure}\nmade by: {how}\n")
    return path
