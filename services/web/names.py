"""Whether text from a request can name a mailbox or help desk at all."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from contracts.settings import Name

_NAME: TypeAdapter[str] = TypeAdapter(Name)


def is_name(text: str) -> bool:
    """True when ``text`` passes the settings file's rule for names (short, plain ASCII)."""
    try:
        _NAME.validate_python(text)
    except ValidationError:
        return False
    return True
