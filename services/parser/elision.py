"""Long runs of base64 lines kept out of the stdlib parser, and read from the raw mail.

The stdlib parser splits a body into lines, keeps them in a list and joins them into one
string: a 40 MB attachment costs it about 150 MB and most of its time. So each run of base64
lines of at least ``MIN_RUN`` bytes is replaced by one line, a placeholder, before parsing.
The tree comes out the same: the parser's decisions depend only on whether a line is
blank, a header field (a name and a colon, or white space first) or a boundary (``--``
first), and neither a base64 line nor the placeholder is any of these.

After parsing, a part whose body is a placeholder keeps its ``Run`` (a place in the raw
mail), and its base64 is decoded straight from there (see ``payloads.payload``). Wherever
else a placeholder ended up (a preamble, a body with more text around the run), the run's
text is put back, and reading the body of a part that keeps a run puts it back too: what
the stdlib sees is always what it would have parsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

MIN_RUN = 8 * 1024
# Base64 lines, as many as follow one another (possessive: a run is found in one pass).
_RUN = re.compile(rb"(?:^[A-Za-z0-9+/=]+\r?\n)++", re.MULTILINE)
_MARKER = "MailroomElidedRun"
_INDEX_DIGITS = 8


@dataclass(frozen=True)
class Run:
    """Where a run of base64 lines is in the raw mail (without its last line ending), and
    the placeholder that stands for it."""

    raw: bytes
    start: int
    end: int
    placeholder: str

    def view(self) -> memoryview:
        return memoryview(self.raw)[self.start : self.end]

    def text(self) -> str:
        return self.raw[self.start : self.end].decode("ascii")

    def put_back(self, text: str) -> str:
        """``text`` with the placeholder replaced by the run."""
        return text.replace(self.placeholder, self.text())


@dataclass(frozen=True)
class Elided:
    """The mail from ``start`` on as the parser is to read it: ``raw`` without ``runs``."""

    raw: bytes
    start: int
    runs: list[Run]

    def chunks(self, size: int) -> Iterator[bytes]:
        """The text to parse, in pieces of at most ``size`` bytes (no copy of it whole)."""
        position = self.start
        for run in self.runs:
            yield from _sliced(self.raw, position, run.start, size)
            yield run.placeholder.encode()
            position = run.end  # the run's last line ending stays in the text
        yield from _sliced(self.raw, position, len(self.raw), size)


def _sliced(raw: bytes, start: int, end: int, size: int) -> Iterator[bytes]:
    for offset in range(start, end, size):
        yield raw[offset : min(offset + size, end)]


def elide(raw: bytes, start: int) -> Elided:
    """``raw[start:]`` without its long runs of base64 lines; ``start`` must be where a
    line starts."""
    if len(raw) - start < MIN_RUN:
        return Elided(raw, start, [])
    found = [m.span() for m in _RUN.finditer(raw, start) if m.end() - m.start() >= MIN_RUN]
    marker = _marker(raw) if found else None
    if marker is None:
        return Elided(raw, start, [])
    runs = []
    for index, (begin, end) in enumerate(found):
        line_end = 2 if raw[end - 2 : end] == b"\r\n" else 1
        placeholder = f"{marker}{index:0{_INDEX_DIGITS}d}"
        runs.append(Run(raw, begin, end - line_end, placeholder))
    return Elided(raw, start, runs)


def _marker(raw: bytes) -> str | None:
    # A placeholder must not occur in the mail itself.
    for suffix in ("", "A", "B", "C"):
        if (_MARKER + suffix).encode() not in raw:
            return _MARKER + suffix
    return None


def put_back(msg: Message, runs: list[Run]) -> Iterator[tuple[Message, Run]]:
    """Put the runs' text back wherever a placeholder ended up in the parsed ``msg``, except
    in a body that is one placeholder and its line ending: those parts are yielded with
    their run."""
    if not runs:
        return
    by_placeholder = {run.placeholder: run for run in runs}
    marker = runs[0].placeholder[:-_INDEX_DIGITS]
    placeholders = re.compile(re.escape(marker) + rf"\d{{{_INDEX_DIGITS}}}")

    def put_back_all(text: str) -> str:
        return placeholders.sub(lambda m: by_placeholder[m.group()].text(), text)

    for part in msg.walk():
        for attribute in ("preamble", "epilogue"):
            text = getattr(part, attribute, None)
            if isinstance(text, str) and marker in text:
                setattr(part, attribute, put_back_all(text))
        body = raw_body(part)
        if marker not in body:
            continue
        whole = placeholders.fullmatch(body.rstrip("\r\n"))
        if whole is not None:
            yield part, by_placeholder[whole.group()]
        else:
            part.set_payload(put_back_all(body))


def raw_body(part: Message) -> str:
    """The body text of a leaf part as the parser left it ("" for a multipart):
    ``get_payload`` hands over raw 8-bit bytes replaced."""
    body = vars(part).get("_payload")
    return body if isinstance(body, str) else ""
