"""The policy the parser reads a mail with: the stdlib's modern one, made lenient and quick.

Every lazy header read of the stdlib goes through it (the content type, ``get_body``). Real
mail trips bugs in the stdlib's header parser, and long or odd values make it slow; this
package reads the values it needs itself, from the raw fields (see ``headers``).
"""

from __future__ import annotations

import re
from email.policy import EmailPolicy
from typing import Any

from services.parser.words import parameter

# The charset of an RFC 2231 parameter value (``name*=utf-16'en'%41``).
_PARAMETER_CHARSET = re.compile(r"(\*\s*=\s*\"?)([^'\"\s;=]+)(?=')")
# Of the fields it reads to walk a mail, the stdlib's parser is given only the type or token
# (and for a Content-Type the parameters it reads itself), of any other field at most the
# first _MOST_FETCHED characters.
_TOKEN_FIELDS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})
_TOKEN_CHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_LEADING_TOKEN = re.compile(rf"\s*({_TOKEN_CHARS}(?:\s*/\s*{_TOKEN_CHARS})?)\s*")
_STDLIB_PARAMETERS = ("boundary", "report-type", "type", "start")
_MOST_FETCHED = 256


class LenientPolicy(EmailPolicy):
    """The stdlib's modern policy, except that reading a header never raises.

    Its header parser decodes RFC 2231 parameters with whatever codec the mail names, and
    UTF-16, ISO-2022 or IDNA raise on most bytes; every lazy header access (the content
    type, ``get_body``) would then fail. Such a header is parsed again with those charsets
    read as UTF-8, and failing that as empty. Only what the stdlib parses changes: this
    package reads parameters from the raw values.

    The stdlib parses a header again on each read (a part's Content-Type some 40 times), and
    its parser takes time growing with the square of a value's length (15 ms for 1 KB of
    '"', 3 s for 16 KB of ';'; 1 ms for ten '"'). So each value is parsed once per mail,
    kept in ``parsed`` (give each mail a policy of its own: ``lenient_policy()``), and only
    in part: see ``_fetched_part``.
    """

    parsed: dict[tuple[str, str], Any] | None = None

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):  # already a parsed header
            return value
        if self.parsed is None:
            return self._parse_leniently(name, _fetched_part(name, value))
        key = (name.lower(), value)
        if key not in self.parsed:
            self.parsed[key] = self._parse_leniently(name, _fetched_part(name, value))
        return self.parsed[key]

    def _parse_leniently(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except Exception:  # the stdlib header parser has bugs; see the module docstring
            pass
        try:
            return super().header_fetch_parse(name, _PARAMETER_CHARSET.sub(r"\1utf-8", value))
        except Exception:
            return super().header_fetch_parse(name, "")


def lenient_policy() -> LenientPolicy:
    """A ``LenientPolicy`` for one mail, with its own parsed header values."""
    return LenientPolicy().clone(parsed={})  # type: ignore[call-arg]  # a field of ours


def _fetched_part(name: str, value: str) -> str:
    """What the stdlib's parser is given of a field (this package reads the parameters it
    needs from the raw value)."""
    kind = name.lower()
    if kind not in _TOKEN_FIELDS:
        return value[:_MOST_FETCHED]
    token = _LEADING_TOKEN.match(value)
    kept = token.group(1) if token else ""
    if kind == "content-type":
        if token is None or value[token.end() : token.end() + 1] not in ("", ";", "("):
            return ""  # the stdlib takes a type followed by other text for no type at all
        for key in _STDLIB_PARAMETERS:
            found = parameter(value, key)
            if found is not None:
                quoted = found[:_MOST_FETCHED].replace("\\", "\\\\").replace('"', '\\"')
                kept += f'; {key}="{quoted}"'
    return kept
