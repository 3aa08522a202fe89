"""Address fields read without the stdlib's full parser where it adds nothing.

Most address fields are plain: ``ann@example.com``, ``Ann Lee <ann@example.com>``,
``"Lee, Ann" <ann@example.com>``, separated by commas, in ASCII, without comments, groups,
escapes or encoded words. The full parser reads such a field as its very words, finds no
defect in it, and costs a tree of tokens per word: ``plain_addresses`` reads these.

The full parser also takes time that grows with the square of a field's length (each
encoded word copies the rest of the field). A field longer than ``LONG_FIELD`` is cut into
its entries first, and an entry too long to be an address is searched for addresses
instead of parsed (``long_field_entries``, ``addresses_in``).
"""

from __future__ import annotations

import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
# A display name: words (atoms without dots, quoted strings without escapes) between blanks.
_WORD = rf'(?:{_ATEXT}+|"[ !#-\[\]-~]*")'
_MAILBOX = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDR_SPEC})|(?P<name>{_WORD}(?:[ \t]+{_WORD})*)?[ \t]*"
    rf"<(?P<angled>{_ADDR_SPEC})>)[ \t]*(?:,|\Z)"
)
_NAME_WORD = re.compile(rf'"([^"]*)"|({_ATEXT}+)')

#: Fields longer than this are read entry by entry; see the module docstring.
LONG_FIELD = 8 * 1024
#: No address, with its name, is longer than this (RFC 5321 allows a 256-character path).
LONG_ENTRY = 2 * 1024
# The pieces of a field, for cutting it at its commas: quoted strings, comments, angle
# addresses and encoded words (which may hold commas and colons), runs of anything else,
# then one character at a time.
_PIECE = re.compile(
    r'"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?|<[^>]*>?|=\?[^?\s]+\?[QqBb]\?[^?\s]*\?='
    r'|(?:[^",<(:=]|=(?!\?))+|.',
    re.DOTALL,
)
# Tried only where a run of address characters starts, so that a long run costs one pass.
_FOUND_ADDRESS = re.compile(r'(?<![^\s<>@,;:"()\[\]])[^\s<>@,;:"()\[\]]+@[^\s<>@,;:"()\[\]]+')


def plain_addresses(value: str) -> list[tuple[str, str]] | None:
    """The (display name, address) pairs of a plain address field, as the full parser reads
    them; None when ``value`` is not plain (or holds no address at all)."""
    if not value.isascii() or "=?" in value:
        return None
    pairs = []
    position = 0
    while position < len(value):
        found = _MAILBOX.match(value, position)
        if found is None or found.end() == position:
            return None
        pairs.append(_pair(found))
        position = found.end()
    return pairs or None


def _pair(found: re.Match[str]) -> tuple[str, str]:
    if found["bare"] is not None:
        return "", found["bare"]
    # Each word as it came (a quoted one without its quotes), one space between words.
    words = _NAME_WORD.finditer(found["name"] or "")
    return " ".join(w[1] if w[1] is not None else w[2] for w in words), found["angled"]


def long_field_entries(value: str) -> list[str] | None:
    """The entries of a long field, cut at the commas between addresses; None when the
    field holds a group (``name: a, b;``), whose commas are inside it."""
    entries: list[str] = []
    current: list[str] = []
    for piece in _PIECE.findall(value):
        if piece == ":":
            return None
        if piece == ",":
            entries.append("".join(current))
            current = []
        else:
            current.append(piece)
    entries.append("".join(current))
    return [entry for entry in entries if entry.strip()]


def addresses_in(entry: str) -> list[str]:
    """The addresses written anywhere in ``entry``: for an entry too long to parse."""
    return _FOUND_ADDRESS.findall(entry) if "@" in entry else []
