"""The policy the parsed tree is built with: the stdlib's modern one, made cheap to read.

The parser reads three fields through the tree: Content-Type, Content-Disposition and
Content-Transfer-Encoding (everything else it reads from the raw values, see headers.py).
The stdlib builds a header object each time one is read, and the tree reads them again and
again (the content type of each part, a dozen times per mail). A value in the common plain
form (tokens, ``name=value`` parameters, quoted strings without escapes) reads as that very
text through the full policy, so it is handed over as it is; any other value goes through
the full policy, once per mail.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

from services.parser.elision import Run, raw_body
from services.parser.headers import LenientPolicy
from services.parser.words import parameter

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Parameter names and values without the characters of RFC 2231 ("*", "'" and, in names,
# "%"), and no empty value: the full policy writes those anew.
_NAME = r"[!#$&+\-.^_`|~0-9A-Za-z]+"
_VALUE = r'(?:[!#$%&+\-.^_`|~0-9A-Za-z]+|"[\t !#-\[\]-~]+")'
_PARAMETER = re.compile(rf"[ \t]*;[ \t]*({_NAME})[ \t]*=[ \t]*{_VALUE}")
_PARAMETERS = rf"(?:{_PARAMETER.pattern})*[ \t]*"
# The forms the full policy reads as their very words (given each parameter once); fields
# are read unfolded, as the full policy reads them.
_PLAIN = {
    "content-type": re.compile(rf"{_TOKEN}/{_TOKEN}{_PARAMETERS}"),
    "content-disposition": re.compile(rf"{_TOKEN}{_PARAMETERS}"),
    "content-transfer-encoding": re.compile(rf"{_TOKEN}[ \t]*"),
}
_LINE_BREAK = re.compile(r"\n|\r")  # as the full policy removes them
# The stdlib's header parser takes time growing with the square of a value's length (3 s
# for 16 KB of ';'): a longer value is given to it only in the part it reads (see
# ``_fetched_part``). No real MIME field comes near this.
LONG_VALUE = 4096
_MOST_FETCHED = 256
_LEADING_TOKEN = re.compile(rf"\s*({_TOKEN}(?:\s*/\s*{_TOKEN})?)\s*")
_STDLIB_PARAMETERS = ("boundary", "report-type", "type", "start")


class Disposition(str):
    """A plain Content-Disposition value, with the one attribute the stdlib reads of it."""

    @property
    def content_disposition(self) -> str:
        return self.split(";", 1)[0].strip().lower()


def _is_plain(form: re.Pattern[str], value: str) -> bool:
    # Encoded words are decoded even in quoted strings; a parameter given twice is dropped.
    if "=?" in value or form.fullmatch(value) is None:
        return False
    names = [name.lower() for name in _PARAMETER.findall(value)]
    return len(names) == len(set(names))


class Part(EmailMessage):
    """A part of the parsed tree, whose body may still be a run of the raw mail (see
    ``elision``): reading the body puts the run's text back first."""

    run: Run | None = None

    def get_payload(self, *args: Any, **kw: Any) -> Any:
        if self.run is not None:
            self.set_payload(self.run.put_back(raw_body(self)))
        return super().get_payload(*args, **kw)

    def set_payload(self, *args: Any, **kw: Any) -> None:
        self.run = None
        super().set_payload(*args, **kw)


class LightPolicy(LenientPolicy):
    """``LenientPolicy`` whose plain MIME fields are read without a header object, and that
    reads each field value once: make one per mail."""

    message_factory = Part

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_read", {})  # policies are otherwise immutable

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):  # a header object set after parsing
            return value
        read: dict[tuple[str, str], Any] = self.__dict__["_read"]
        found = read.get((name, value))
        if found is None:
            found = read[name, value] = self._read_once(name, value)
        return found

    def _read_once(self, name: str, value: str) -> Any:
        key = name.lower()
        plain = _PLAIN.get(key)
        if plain is not None:
            unfolded = _LINE_BREAK.sub("", value)
            if _is_plain(plain, unfolded):
                return Disposition(unfolded) if key == "content-disposition" else unfolded
        if len(value) > LONG_VALUE:
            value = _fetched_part(key, value)
        return super().header_fetch_parse(name, value)


def _fetched_part(key: str, value: str) -> str:
    """What the stdlib's parser is given of a field too long for it: of a MIME field its
    type or token, and of a Content-Type the parameters the stdlib reads itself; of another
    field its start. (The parser reads every other parameter from the raw value.)"""
    if key not in _PLAIN:
        return value[:_MOST_FETCHED]
    token = _LEADING_TOKEN.match(value)
    kept = token.group(1) if token else ""
    if key == "content-type":
        if token is None or value[token.end() : token.end() + 1] not in ("", ";", "("):
            return ""  # the stdlib takes a type followed by other text for no type at all
        for name in _STDLIB_PARAMETERS:
            found = parameter(value, name)
            if found is not None:
                quoted = found[:_MOST_FETCHED].replace("\\", "\\\\").replace('"', '\\"')
                kept += f'; {name}="{quoted}"'
    return kept
