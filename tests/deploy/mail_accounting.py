"""Mail delivered into the stack's Maildir, and what became of each: exactly one request
mail or dead-letter entry per mail."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.mailgen import kind_of, make_mail

REQUEST, DEAD = "request", "dead letter"


def deliver(maildir: Path, numbers: range) -> dict[str, str]:
    """Generated mails ``numbers`` (``bench.mailgen``: requests, replies, and every 20th
    broken beyond reading) into ``new/``, each written to ``tmp/`` first and then renamed,
    as a mail server delivers, so the poller never sees half a mail.

    Returns the outcome each must have, by Maildir key.
    """
    expected = {}
    for i in numbers:
        key = f"gen-{i:05d}"
        (maildir / "tmp" / key).write_bytes(make_mail(i))
        os.rename(maildir / "tmp" / key, maildir / "new" / key)
        expected[key] = DEAD if kind_of(i) == "broken" else REQUEST
    return expected


@dataclass(frozen=True)
class Audit:
    mails: int
    requests: int
    dead_letters: int
    #: No outcome at all.
    lost: list[str]
    #: More than one outcome (two request mails, or a request mail and a dead letter).
    doubled: list[str]
    #: Outcomes of mails never delivered.
    strangers: list[str]
    #: Outcomes of the wrong kind: a readable mail dead-lettered, a broken one on a request.
    wrong_kind: list[str]

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.strangers or self.wrong_kind)

    @property
    def accounted(self) -> bool:
        """Every mail has an outcome (they may still be wrong)."""
        return not self.lost


def audit(expected: dict[str, str], on_requests: list[str], dead: list[str]) -> Audit:
    counts = Counter(on_requests) + Counter(dead)
    kinds = {key: REQUEST for key in on_requests} | {key: DEAD for key in dead}
    return Audit(
        mails=len(expected),
        requests=len(on_requests),
        dead_letters=len(dead),
        lost=sorted(key for key in expected if key not in counts),
        doubled=sorted(key for key, n in counts.items() if n > 1),
        strangers=sorted(key for key in counts if key not in expected),
        wrong_kind=sorted(k for k, kind in kinds.items() if k in expected and expected[k] != kind),
    )
