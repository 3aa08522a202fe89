"""The settings file's refusals, placed at the fields of the mailbox form.

``SettingsFile`` names a field by its path (``helpdesks[0].mailboxes[2].port``), or, for a
rule between fields, in its sentence (``protocol ews needs `connect_url```). Each refusal
that concerns the mailbox being saved or its help desk lands on the form field it names;
any other is a form-level error (under ""), with the mailbox or help desk it concerns named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from services.web.mailbox_fields import FIELDS, FIELDS_BY_NAME, FieldSpec

_BY_PATH: dict[tuple[str, tuple[str, ...]], FieldSpec] = {(f.level, f.path): f for f in FIELDS}
#: Words for refusals whose own say little to someone filling in a form.
_CLEARER = {
    ("name", "string_pattern_mismatch"): "use letters, digits, '.', '_' and '-' only, "
    "starting with a letter or digit",
    ("proxy", "string_pattern_mismatch"): "write it as http://host:port or socks5://host:port",
}
_PLACE = re.compile(r"helpdesks\[(\d+)\](?:\.mailboxes\[(\d+)\])?((?:\.\w+)*)")
_BACKTICKED = re.compile(r"`(\w+)")
_NEEDS = re.compile(r"needs `\w+`(?: and `\w+`)*")
#: Refusals of two mailboxes reading one: the field that says where this one reads.
_SHARED = ("reads the same mailbox as", "reads the error folder of")


@dataclass(frozen=True)
class Target:
    """Where the saved mailbox sits in the settings file that was validated."""

    data: dict[str, Any]
    desk: int
    box: int

    @property
    def mailbox(self) -> dict[str, Any]:
        return dict(self.data["helpdesks"][self.desk]["mailboxes"][self.box])


def form_errors(exc: ValidationError, target: Target) -> dict[str, str]:
    """Form field -> what is wrong there and the fix; "" for what no field of the form
    holds. Never a secret: the settings' messages quote none."""
    found: dict[str, list[str]] = {}
    hidden: list[str] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        for line in _message(err, loc).split("\n"):
            name, text = _placed(loc, line, target)
            if name and not _applies(FIELDS_BY_NAME[name], target.mailbox):
                hidden.append(f"{FIELDS_BY_NAME[name].label}: {_named(text, target.data)}")
                continue
            text = _named(text, target.data)
            if text not in found.setdefault(name, []):
                found[name].append(text)
    if "auth" not in found:
        # With the authentication refused, the fields it would need are beside the point.
        found.setdefault("", []).extend(hidden)
    return {name: "; ".join(texts) for name, texts in found.items() if texts}


def _message(err: ErrorDetails, loc: tuple[Any, ...]) -> str:
    if err["type"] == "missing":
        return "is required"
    if err["type"] == "extra_forbidden":
        return "is not a setting Mailroom knows"
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    clearer = _CLEARER.get((last, err["type"]))
    return clearer or err["msg"].removeprefix("Value error, ")


def _placed(loc: tuple[Any, ...], line: str, target: Target) -> tuple[str, str]:
    """(form field or "", text) for one line of one refusal."""
    if not loc and (place := _PLACE.match(line)):
        # A rule between help desks or mailboxes names the exact field itself.
        desk, box, path = int(place[1]), place[2], place[3]
        loc = ("helpdesks", desk) + (("mailboxes", int(box)) if box else ())
        loc += tuple(path.split(".")[1:])
        line = line[place.end() :].removeprefix(":").strip()
    if line.startswith(".") and ":" in line:
        # A rule of one model naming a field inside it: `.error_folder.name: ...`.
        path, _, line = line[1:].partition(":")
        loc += tuple(path.split("."))
        line = line.strip()
    names = tuple(p for p in loc[4:] if isinstance(p, str))
    name = ""
    if loc[:4] == ("helpdesks", target.desk, "mailboxes", target.box):
        name = _field("mailbox", names) if names else _named_in(line, target.mailbox)
    elif loc[:2] == ("helpdesks", target.desk) and loc[2:3] != ("mailboxes",):
        name = _field("helpdesk", tuple(p for p in loc[2:] if isinstance(p, str)))
    if name or not loc:
        return name, line
    return "", f"{_where(loc, target.data)}: {line}"


def _field(level: str, path: tuple[str, ...]) -> str:
    """The form field kept at ``path``, or at the nearest path above it (an entry of a
    list is its list's)."""
    for end in range(len(path), 0, -1):
        if (spec := _BY_PATH.get((level, path[:end]))) is not None:
            return spec.name
    return ""


def _named_in(line: str, box: dict[str, Any]) -> str:
    """The field a rule between fields of the mailbox is about: the first it names (of
    fields it says are needed, the first that is blank)."""
    if any(words in line for words in _SHARED):
        return "path" if box.get("protocol") == "maildir" else "host"
    needed = _NEEDS.search(line)
    named = _BACKTICKED.findall(needed[0] if needed else line)
    fields = [s.name for n in named if (s := _BY_PATH.get(("mailbox", (n,))))]
    blank = [n for n in fields if needed and not box.get(FIELDS_BY_NAME[n].path[0])]
    if blank or fields:
        return (blank or fields)[0]
    return "auth" if re.match(r"(auth|protocol \w+ takes)\b", line) else ""


def _applies(spec: FieldSpec, box: dict[str, Any]) -> bool:
    if spec.level == "helpdesk":
        return True
    return spec.applies(box.get("protocol", ""), box.get("auth", "basic"))


def _where(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    desk = data["helpdesks"][loc[1]] if len(loc) > 1 else None
    if desk is None:
        return "the settings"
    where = f"help desk {desk.get('id')!r}"
    if len(loc) > 3 and loc[2] == "mailboxes":
        where = f"mailbox {desk['mailboxes'][loc[3]].get('name')!r} of {where}"
        loc = loc[2:]
    field = ".".join(p for p in loc[2:] if isinstance(p, str))
    return f"{where}, {field}" if field else where


def _named(text: str, data: dict[str, Any]) -> str:
    """``text`` with each settings path in it (``helpdesks[0].mailboxes[2].name``) put as
    the mailbox or help desk it names: indexes mean nothing to someone at the form."""

    def name(place: re.Match[str]) -> str:
        loc: tuple[Any, ...] = ("helpdesks", int(place[1]))
        if place[2]:
            loc += ("mailboxes", int(place[2]))
        return _where(loc, data)

    return _PLACE.sub(name, text)
