"""Message-IDs read from header values: the one reading every stage and command shares.

Duplicates, threads and bounces are found by comparing Message-IDs, and a mail is followed
across mailboxes by the poller and the admin commands by its Message-ID, so each of them
must read ``Message-ID``, ``In-Reply-To`` and ``References`` the same way. An id is kept
as ``<left@right>``:

- ``<a@x>`` as it is; folded lines are unfolded, and white space inside the brackets (a
  mailer that folded a long id) is dropped;
- comments are skipped: ``<a@x> (added by the gateway)``, ``(note) <a@x>``;
- without brackets, ``a@x`` is read as ``<a@x>`` (several mailers and scripts write it so);
  with brackets present, bare words are text, not ids;
- no id at all, an id with control characters or undecodable bytes, or one longer than
  ``MAX_ID_BYTES`` is none: the parser then makes one from the mail's bytes.
"""

from __future__ import annotations

import re

#: An id longer than a header line may be (RFC 5322) is garbage; it would also not fit the
#: store's index on PostgreSQL.
MAX_ID_BYTES = 998

_BRACKETED = re.compile(r"<([^<>]*)>")
# Starts only where a word starts: tried from inside a long word without "@", it would scan
# the rest of the word again at every character.
_BARE = re.compile(r"(?<![^\s<>,;()\"\[\]])[^\s<>,;()\"\[\]]+@[^\s<>,;()\"\[\]]+")
_FOLD = re.compile(r"\r?\n")
_SPACE = re.compile(r"\s+")
_BAD = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def message_ids(value: str) -> list[str]:
    """Every Message-ID named in a header value, in order, each once (``References``,
    ``In-Reply-To``). Never raises."""
    text = _without_comments(_FOLD.sub("", _utf8(value)))
    bracketed = _BRACKETED.findall(text)
    found = [_SPACE.sub("", b) for b in bracketed] if bracketed else _BARE.findall(text)
    return list(dict.fromkeys(f"<{i}>" for i in found if _usable(i)))


def first_message_id(value: str) -> str | None:
    """The Message-ID of a ``Message-ID`` header value (the first one it names); None when it
    names none. Never raises."""
    return next(iter(message_ids(value)), None)


def _utf8(value: str) -> str:
    """Raw 8-bit header bytes (lone surrogates, as the stdlib hands them over) that are UTF-8
    read as text; other raw bytes stay surrogates, and an id holding them is none."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeError:
        return value


def _usable(found: str) -> bool:
    if not found or _BAD.search(found):
        return False
    return len(found.encode("utf-8")) + 2 <= MAX_ID_BYTES


def _without_comments(text: str) -> str:
    """``text`` less its ``(comments)`` (nested, with ``\\`` escapes), quoted strings kept."""
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
            out += [char] if depth == 0 else []
        elif char == "\\":
            escaped = True
            out += [char] if depth == 0 else []
        elif quoted:
            quoted = char != '"'
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            quoted = char == '"'
            out.append(char)
    return "".join(out)
