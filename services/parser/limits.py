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

from services.runtime.errors import MailError

_MB = 1024 * 1024
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^"\s;]+)', re.IGNORECASE)
_DELIMITER = re.compile(rb"^--([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)


@dataclass(frozen=True)
class ParserLimits:
    """How much of a mail the parser is willing to take on; defaults suit most help desks."""

    max_depth: int = 20
    max_parts: int = 500
    max_header_kb: float = 256
    max_decoded_mb: float = 100

    def depth_exceeded(self) -> MailError:
        return MailError(
            f"MIME nesting is deeper than {self.max_depth} levels (MAILROOM_MAX_MIME_DEPTH)"
        )

    def parts_exceeded(self) -> MailError:
        return MailError(
            f"mail has more than {self.max_parts} MIME parts (MAILROOM_MAX_MIME_PARTS)"
        )


def header_end(raw: bytes, limits: ParserLimits) -> int:
    """Offset of the blank line that ends the top-level header block (or of the end).

    Raises:
        MailError: the header block is larger than ``max_header_kb``.
    """
    most = int(limits.max_header_kb * 1024)
    position = 0
    while position < len(raw):
        line = _LINE.match(raw, position)
        assert line is not None  # the pattern matches the empty string
        if line.group().strip(b"\r\n") == b"" or line.end() == position:
            break
        position = line.end()
        if position > most:
            raise MailError(
                f"header block is larger than {limits.max_header_kb:g} KB (MAILROOM_MAX_HEADER_KB)"
            )
    return position


def check_delimiters(raw: bytes, limits: ParserLimits) -> None:
    """Refuse a mail with too many parts before parsing it, from its boundary lines.

    Each line ``--boundary`` of a declared boundary opens one part, so their count plus one
    (the mail itself) is a lower bound of the part count, without building a single part.
    """
    boundaries = {b.rstrip(b"'") for b in _BOUNDARY.findall(raw)}
    if not boundaries:
        return
    opened = 0
    for line in _DELIMITER.finditer(raw):
        if line[1] in boundaries:
            opened += 1
            if opened + 1 > limits.max_parts:
                raise limits.parts_exceeded()


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
        children = part.get_payload() if part.is_multipart() else []
        stack.extend((depth + 1, c) for c in reversed(children) if isinstance(c, Message))


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
