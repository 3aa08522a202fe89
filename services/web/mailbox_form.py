"""The mailbox form: its fields filled from the settings, and form data (strings) read back
into settings, with an error for each field whose value cannot be one.

Secrets are write-only: the form never carries a stored one. A secret field left blank keeps
the stored secret; its "clear_NAME" checkbox removes it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from contracts.mailbox_oauth import DEFAULT_REDIRECT_URL, is_google
from contracts.settings import DEFAULT_PORTS, HelpdeskSettings, MailboxSettings
from services.web.mailbox_fields import (
    AUTHS,
    CLOUDS,
    DERIVED_DEFAULTS,
    FIELDS,
    FIELDS_BY_NAME,
    HELPDESK_NOTE,
    PREFILLED_TOKEN_URLS,
    PROTOCOLS,
    FieldSpec,
    OAuthDefaults,
    auth_choices,
    cloud_of,
    default_port,
    default_values,
    fields_for,
    oauth_defaults,
)

__all__ = [
    "AUTHS",
    "CLOUDS",
    "FIELDS",
    "HELPDESK_NOTE",
    "PROTOCOLS",
    "FieldSpec",
    "OAuthDefaults",
    "ParsedForm",
    "auth_choices",
    "cloud_of",
    "default_port",
    "default_values",
    "fields_for",
    "form_values",
    "oauth_defaults",
    "parse_form",
    "secret_state",
]

#: The longest value each kind of field takes: far beyond any real one, so a pasted book or
#: a forged request is refused before it is read.
MAX_CHARS = {
    "text": 2048,
    "secret": 4096,
    "list": 32768,
    "number": 32,
    "bool": 8,
    "choice": 2048,
    "readonly": 2048,
}
#: The longest entry of a list (an address is at most 254 characters).
MAX_ITEM_CHARS = 320
_TRUE = {"on", "true", "1", "yes"}
_FALSE = {"", "off", "false", "0", "no"}
_SEPARATORS = re.compile(r"[,\n]")
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
DEFAULT_PROTOCOL = "imaps"


@dataclass(frozen=True)
class ParsedForm:
    """Form data as settings: the mailbox's (secrets apart) and a patch of its help desk's."""

    #: Only the fields that apply to the protocol and authentication; the rest take their
    #: defaults. No secret is here.
    mailbox: dict[str, Any]
    #: The help-desk-level fields, shaped as ``HelpdeskSettings``.
    helpdesk: dict[str, Any]
    #: Secret field -> its new value, or None to remove it; a secret not here is kept.
    secrets: dict[str, str | None] = field(repr=False)


def form_values(
    desk: HelpdeskSettings,
    box: MailboxSettings | None,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    redirect_url: str | None = None,
) -> dict[str, str]:
    """Form field -> value, for every field but the secrets (``secret_state`` says whether
    each is set). ``box`` None: a new mailbox of ``protocol``. OAuth fields that are not set
    show the protocol's defaults, so switching to OAuth starts from them.

    ``redirect_url``: the one ``MailboxSaver`` gives OAuth mailboxes, when it is given one;
    shown instead of the mailbox's own.
    """
    if box is None:
        # Every field at its default, unvalidated: a new mailbox has no name yet.
        new: Any = {"protocol": protocol, "auth": auth_choices(protocol)[0]}
        shown = MailboxSettings.model_construct(name="", **new)
    else:
        shown = box
    defaults = default_values(shown.protocol, cloud_of(shown.graph_endpoint))
    defaults["redirect_url"] = DEFAULT_REDIRECT_URL
    values: dict[str, str] = {}
    for spec in FIELDS:
        if spec.kind == "secret":
            continue
        source: BaseModel = desk if spec.level == "helpdesk" else shown
        value = spec.value_in(source)
        values[spec.name] = defaults.get(spec.name, "") if value is None else _shown(value)
    if redirect_url is not None:
        values["redirect_url"] = redirect_url
    return values


def secret_state(box: MailboxSettings | None) -> dict[str, bool]:
    """Secret field -> whether the mailbox has a value for it ("set" / "not set")."""
    secrets = [f for f in FIELDS if f.kind == "secret"]
    return {f.name: box is not None and bool(f.value_in(box)) for f in secrets}


def parse_form(data: Mapping[str, str]) -> tuple[ParsedForm, dict[str, str]]:
    """Form data -> settings, and form field -> error for each value of the wrong type,
    out of range or too long. Only the fields that apply to the chosen protocol and
    authentication are read; other keys are ignored. A checkbox that is not sent is off.

    Values left as the form filled them in follow the protocol: a scope or authorization URL
    that is some protocol's default is left for the settings to derive, and a port that is
    another protocol's default becomes this one's.
    """
    errors: dict[str, str] = {}
    protocol = _choice(FIELDS_BY_NAME["protocol"], data.get("protocol", ""), errors)
    if protocol is None:
        return ParsedForm({}, {}, {}), errors
    auth = "basic"
    if protocol in FIELDS_BY_NAME["auth"].protocols:
        auth = _auth(protocol, data.get("auth", ""), errors) or "basic"
    mailbox: dict[str, Any] = {"protocol": protocol, "auth": auth}
    helpdesk: dict[str, Any] = {}
    secrets: dict[str, str | None] = {}
    for spec in fields_for(protocol, auth):
        if spec.name in ("protocol", "auth") or spec.kind == "readonly":
            continue
        raw = data.get(spec.name)
        if raw is not None and len(raw) > MAX_CHARS[spec.kind]:
            errors[spec.name] = f"is longer than {MAX_CHARS[spec.kind]} characters: shorten it"
            continue
        if spec.kind == "secret":
            _secret(spec, raw or "", data.get(f"clear_{spec.name}", ""), secrets, errors)
            continue
        parsed = _parse(spec, raw, errors)
        if spec.name in errors or parsed is _LEAVE:
            continue
        _put(helpdesk if spec.level == "helpdesk" else mailbox, spec.path, parsed)
    if not mailbox.get("name") and "name" not in errors:
        errors["name"] = "enter a name for the mailbox"
    _follow_protocol(mailbox)
    return ParsedForm(mailbox, helpdesk, secrets), errors


#: ``_parse``'s answer for a blank field whose setting keeps its default (or, for a help
#: desk, its current value).
_LEAVE: Any = object()


def _parse(spec: FieldSpec, raw: str | None, errors: dict[str, str]) -> Any:
    if spec.kind == "bool":
        return _bool(spec, raw or "", errors)
    text = (raw or "").strip()
    if spec.kind == "list":
        return _list(spec, raw or "", errors)
    if _has_control(text):
        errors[spec.name] = "holds a control character (a line break, tab or similar): remove it"
        return None
    if not text:
        # Blank: the setting's default (the folder INBOX, the protocol's port); a help desk's
        # setting keeps its current value.
        return _LEAVE if _model_field(spec).default not in (None, PydanticUndefined) else None
    if spec.kind == "number":
        return _number(spec, text, errors)
    if spec.kind == "choice":
        return _choice(spec, text, errors)
    return text


def _bool(spec: FieldSpec, raw: str, errors: dict[str, str]) -> bool | None:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        errors[spec.name] = "must be ticked or not"
    return False


def _list(spec: FieldSpec, raw: str, errors: dict[str, str]) -> list[str]:
    items = [item.strip() for item in _SEPARATORS.split(raw)]
    items = [item for item in items if item]
    if any(_has_control(item) for item in items):
        errors[spec.name] = "holds a control character (a tab or similar): remove it"
    elif any(len(item) > MAX_ITEM_CHARS for item in items):
        errors[spec.name] = (
            f"holds an entry longer than {MAX_ITEM_CHARS} characters: separate entries with commas"
        )
    return items


def _number(spec: FieldSpec, text: str, errors: dict[str, str]) -> float | int | None:
    info = _model_field(spec)
    whole = _is_integer(info)
    if not (_INTEGER if whole else _DECIMAL).match(text):
        errors[spec.name] = f"must be {_range_words(info, whole)}"
        return None
    value: float | int = int(text) if whole else float(text)
    if not math.isfinite(value):
        errors[spec.name] = f"must be {_range_words(info, whole)}"
        return None
    low, high = _bounds(info)
    too_low = low is not None and (value < low[0] or (value == low[0] and not low[1]))
    too_high = high is not None and (value > high[0] or (value == high[0] and not high[1]))
    if too_low or too_high:
        errors[spec.name] = f"must be {_range_words(info, whole)}"
        return None
    return value


def _choice(spec: FieldSpec, value: str, errors: dict[str, str]) -> str | None:
    value = value.strip()
    if any(value == v for v, _ in spec.choices) or (spec.other_allowed and value):
        return value
    if spec.other_allowed:
        return None
    errors[spec.name] = "choose one of: " + ", ".join(label for _, label in spec.choices)
    return None


def _auth(protocol: str, value: str, errors: dict[str, str]) -> str | None:
    allowed = auth_choices(protocol)
    value = value.strip()
    if value in allowed:
        return value
    if value not in AUTHS:
        errors["auth"] = "choose " + " or ".join(AUTHS[a] for a in allowed)
    elif value == "oauth":
        *others, last = [PROTOCOLS[p] for p in PROTOCOLS if "oauth" in auth_choices(p)]
        oauth = f"{', '.join(others)} or {last}" if others else last
        errors["auth"] = (
            f"OAuth is not available for {PROTOCOLS[protocol]}: choose Basic, or the "
            f"protocol {oauth}"
        )
    else:
        errors["auth"] = f"{PROTOCOLS[protocol]} takes OAuth only: choose OAuth"
    return None


def _secret(
    spec: FieldSpec,
    value: str,
    clear: str,
    secrets: dict[str, str | None],
    errors: dict[str, str],
) -> None:
    cleared = clear.strip().lower() in _TRUE
    if cleared and value:
        errors[spec.name] = "type a new value or tick clear, not both"
    elif cleared:
        secrets[spec.name] = None
    elif value:
        secrets[spec.name] = value


def _follow_protocol(box: dict[str, Any]) -> None:
    """Values the form filled in for another protocol or provider are left for the settings
    to derive for this one."""
    for name, derived in DERIVED_DEFAULTS.items():
        if box.get(name) in derived:
            box[name] = None
    protocol = box["protocol"]
    if box.get("token_url") in PREFILLED_TOKEN_URLS and is_google(box.get("host"), None):
        box["token_url"] = None
    if protocol in DEFAULT_PORTS and box.get("port") in DEFAULT_PORTS.values():
        box["port"] = DEFAULT_PORTS[protocol]


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _model_field(spec: FieldSpec) -> FieldInfo:
    """The settings field ``spec`` is kept in, with its type and bounds."""
    model: type[BaseModel] = HelpdeskSettings if spec.level == "helpdesk" else MailboxSettings
    for part in spec.path[:-1]:
        model = cast(type[BaseModel], model.model_fields[part].annotation)
    return model.model_fields[spec.path[-1]]


def _is_integer(info: FieldInfo) -> bool:
    types = get_args(info.annotation) or (info.annotation,)
    return int in types and float not in types


Bound = tuple[float, bool]  # (value, whether it is allowed itself)


def _bounds(info: FieldInfo) -> tuple[Bound | None, Bound | None]:
    low: Bound | None = None
    high: Bound | None = None
    for rule in info.metadata:
        if (ge := getattr(rule, "ge", None)) is not None:
            low = (ge, True)
        if (gt := getattr(rule, "gt", None)) is not None:
            low = (gt, False)
        if (le := getattr(rule, "le", None)) is not None:
            high = (le, True)
        if (lt := getattr(rule, "lt", None)) is not None:
            high = (lt, False)
    return low, high


def _range_words(info: FieldInfo, whole: bool) -> str:
    low, high = _bounds(info)
    words = ["a whole number" if whole else "a number"]
    if low is not None:
        words.append(f"{'at least' if low[1] else 'above'} {_shown(float(low[0]))}")
    if high is not None:
        words.append(f"{'at most' if high[1] else 'below'} {_shown(float(high[0]))}")
    if len(words) == 3:
        return f"{words[0]}, {words[1]} and {words[2]}"
    return ", ".join(words)
