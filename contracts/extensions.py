"""File name extensions: one rule for the attachment settings and for the validator."""

from __future__ import annotations

import re

# What a single extension may hold; `last_extension` in the validator never yields a dot,
# a slash or a space inside one, so such a setting could never match a file.
_EXTENSION = re.compile(r"[\w+~$!#@&=-]{1,32}")


def normalise_extension(extension: str) -> str:
    """``".PDF "`` -> ``"pdf"``: how extensions are compared everywhere."""
    return extension.strip().lstrip(".").lower()


def extension_setting(written: str) -> str:
    """An extension as written in the settings, normalised: ``".EXE"``, ``"EXE"`` and
    ``"*.exe"`` all give ``"exe"``.

    Raises:
        ValueError: saying what to write instead, for anything that could never match a
            file name (empty, spaces, slashes, wildcards, several extensions).
    """
    text = written.strip()
    text = text.removeprefix("*.") if text.startswith("*.") else text
    extension = normalise_extension(text)
    if not extension:
        raise ValueError("an extension is empty: write it as `exe`, `.exe` or `*.exe`")
    if _EXTENSION.fullmatch(extension):
        return extension
    if "*" in extension or "?" in extension:
        problem = "a wildcard matches only as `*.ext`, with nothing else"
    elif "/" in extension or "\\" in extension:
        problem = "`/` and `\\` cannot be part of a file name"
    elif any(c.isspace() for c in extension):
        problem = "a space cannot be part of an extension"
    elif "." in extension:
        last = extension.rsplit(".", 1)[1]
        problem = f"only the last extension decides what a file is: write `{last}`"
    elif len(extension) > 32:
        problem = "an extension is at most 32 characters"
    else:
        problem = "it holds a character that is not part of file name extensions"
    raise ValueError(f"{written.strip()!r} is not one extension ({problem}); write e.g. `exe`")
