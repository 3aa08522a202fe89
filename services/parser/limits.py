"""Limits against hostile mail: nesting depth, part count, header size, decoded size.

Each limit is a deployment setting (``MAILROOM_MAX_*``, see ``contracts.settings``); the
parser's worker turns them into a ``ParserLimits``. A mail over a limit is rejected with a
``MailError`` that names the limit and the setting. The cheap checks run on the raw bytes
before the MIME parser builds anything; the decoded size is counted as parts are decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

from services.parser.headers import LOST_LINES, header_goes_on, is_header_line
from services.parser.payloads import subparts
from services.runtime.errors import MailError

_MB = 1024 * 1024
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
# Literal-led patterns: the regex engine then skims a big mail in milliseconds.
_BOUNDARIES = [
    re.compile(p + rb'\s*=\s*(?:"([^"\r\n]+)"|([^"\s;]+))') for p in (rb"oundary", rb"OUNDARY")
]
_DELIMITER = re.compile(rb"\n--([^\r\n]*)")


@dataclass(frozen=True)
class ParserLimits:
    """How much of a mail the parser is willing to take on; defaults suit most help desks."""

    max_depth: int = 20
    max_parts: int = 500
    max_header_kb: float = 256
    max_decoded_mb: float = 100

    def depth_exceeded(self) -> MailError:
        return MailError(
            f"MIME parts are nested too deeply: more than {self.max_depth} levels"
            " (MAILROOM_MAX_MIME_DEPTH)"
        )

    def parts_exceeded(self) -> MailError:
        return MailError(
            f"mail has more than {self.max_parts} MIME parts (MAILROOM_MAX_MIME_PARTS)"
        )


def header_end(raw: bytes, limits: ParserLimits) -> int:
    """Offset where the top-level header block ends: its blank line, or the first line of
    body text when the blank line is missing (a line that is no field, and not followed by
    one; see ``headers.repair_header_block``).

    Raises:
        MailError: the header block is larger than ``max_header_kb``.
    """
    most = int(limits.max_header_kb * 1024)
    line = _LINE.match(raw, 0)
    while line is not None and line.end() > line.start():
        if _ends_header(line.group(), raw, line):
            break
        following = _LINE.match(raw, line.end())
        if line.end() > most:
            raise MailError(
                f"header block is larger than {limits.max_header_kb:g} KB (MAILROOM_MAX_HEADER_KB)"
            )
        line = following
    return line.start() if line is not None else len(raw)


def _ends_header(line: bytes, raw: bytes, match: re.Match[bytes]) -> bool:
    if line.strip(b"\r\n") == b"":
        return True
    if match.start() == 0 or is_header_line(line):
        return False
    return not header_goes_on(_lines(raw, match.end(), LOST_LINES))


def _lines(raw: bytes, offset: int, count: int) -> list[bytes]:
    found: list[bytes] = []
    while len(found) < count and offset < len(raw):
        line = _LINE.match(raw, offset)
        if line is None or line.end() == offset:
            break
        found.append(line.group())
        offset = line.end()
    return found


def prescan(raw: bytes, limits: ParserLimits) -> None:
    """Refuse a mail nested too deeply or with too many parts before parsing it.

    Reads only the boundary lines: each ``--boundary`` line of a declared boundary opens a
    part, and a boundary seen for the first time opens a level. Both counts are lower
    bounds of what the parser would build, so no usable mail is refused here.
    """
    boundaries = {q or b for pattern in _BOUNDARIES for q, b in pattern.findall(raw)}
    opened, levels = 0, list[bytes]()
    for line in _DELIMITER.finditer(raw) if boundaries else ():
        boundary, closing = _delimiter(line[1].rstrip(b" \t"), boundaries)
        if boundary is None:
            continue
        if boundary in levels:
            del levels[levels.index(boundary) + 1 :]  # back from parts nested in this one
        else:
            levels.append(boundary)
        if closing:
            levels.pop()
        opened += not closing
        if len(levels) > limits.max_depth:
            raise limits.depth_exceeded()
        if opened + 1 > limits.max_parts:
            raise limits.parts_exceeded()


def _delimiter(text: bytes, boundaries: set[bytes]) -> tuple[bytes | None, bool]:
    if text in boundaries:
        return text, False
    if text.endswith(b"--") and text[:-2] in boundaries:
        return text[:-2], True
    return None, False


def check_tree(msg: Message, limits: ParserLimits) -> None:
    """Refuse a parsed mail nested deeper or made of more parts than ``limits`` allow.

    Counts every part, those of attached mails too; decodes nothing.
    """
    count = 0
    for depth, _part in _walk(msg):
        count += 1
        if depth > limits.max_depth:
            raise limits.depth_exceeded()
        if count > limits.max_parts:
            raise limits.parts_exceeded()


def _walk(msg: Message) -> Iterator[tuple[int, Message]]:
    """Every part with its depth (the mail is 0), without recursion."""
    stack = [(0, msg)]
    while stack:
        depth, part = stack.pop()
        yield depth, part
        stack.extend((depth + 1, c) for c in reversed(subparts(part)))


class DecodeBudget:
    """The decoded size of a mail's parts so far, against ``max_decoded_mb``."""

    def __init__(self, limits: ParserLimits) -> None:
        self._limits = limits
        self._left = int(limits.max_decoded_mb * _MB)

    def spend(self, size: int) -> None:
        """Count ``size`` decoded bytes.

        Raises:
            MailError: the decoded parts now add up to more than ``max_decoded_mb``.
        """
        self._left -= size
        if self._left < 0:
            raise MailError(
                f"decoded parts add up to more than {self._limits.max_decoded_mb:g} MB"
                " (MAILROOM_MAX_DECODED_MB)"
            )
