"""Mails for the fuzz test: each a mail of the shared corpus with a few mutations applied."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fuzz_bytes
import fuzz_headers
import fuzz_mime
import fuzz_sizes
from fuzz_shape import Mutation
from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
NOT_MAIL = {"LICENSE", "README.md", ".gitattributes"}
#: A mutation that makes a mail larger than this is left out: a second is a fair bound for
#: the time a mail of this size takes, not for one of any size.
MOST_BYTES = 6 * 1024 * 1024
MUTATIONS: list[Mutation] = [
    *fuzz_headers.MUTATIONS,
    *fuzz_mime.MUTATIONS,
    *fuzz_sizes.MUTATIONS,
    *fuzz_bytes.MUTATIONS,
]


@dataclass(frozen=True)
class FuzzedMail:
    """The bytes, and how they were made (shown instead of the bytes when a test fails)."""

    source: str
    steps: tuple[str, ...]
    raw: bytes

    @property
    def how(self) -> str:
        return " -> ".join([self.source, *self.steps])

    def __repr__(self) -> str:
        sha = hashlib.sha256(self.raw).hexdigest()[:16]
        return f"FuzzedMail({self.how}, {len(self.raw)} bytes, sha256 {sha}...)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis would print the fields, bytes and all


@cache
def corpus() -> tuple[tuple[str, bytes], ...]:
    """Every mail of the corpus, by its path in it."""
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in NOT_MAIL)
    assert files, f"no corpus at {CORPUS}"
    return tuple((str(p.relative_to(CORPUS)), p.read_bytes()) for p in files)


@st.composite
def fuzzed_mails(draw: st.DrawFn) -> FuzzedMail:
    source, raw = draw(st.sampled_from(corpus()))
    steps = []
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        mutated = mutation(draw, raw)
        if len(mutated) <= MOST_BYTES:
            raw = mutated
            steps.append(mutation.__name__)
    return FuzzedMail(source, tuple(steps), raw)
