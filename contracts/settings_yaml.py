"""The settings file as bytes and as YAML, read within bounds.

A settings file is a few kilobytes of UTF-8. Anything else is refused with the reason before
it can cost much: a file over ``MAX_FILE_BYTES``, bytes that are not UTF-8, a key written
twice (YAML would silently keep the last), and aliases that would expand to more than
``MAX_VALUES`` values (the "billion laughs": a few lines that expand to gigabytes).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from contracts.file_kinds import file_kind

MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 100
_BOM = b"\xef\xbb\xbf"
_MERGE = "tag:yaml.org,2002:merge"


class SettingsError(Exception):
    """A settings file that cannot be used; the message names each field and the fix."""


def read_settings_text(path: Path) -> str:
    """The text of the settings file at ``path``; raises ``SettingsError`` saying why not."""
    try:
        # Not blocking: a named pipe with no writer would wait for ever on open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise SettingsError(
                f"settings file {path} is {file_kind(mode)}, not a file: give the path of "
                "the YAML settings file"
            )
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SettingsError(
            f"settings file {path} is larger than 1 MiB; settings take a few kilobytes: "
            "check that this is the settings file"
        )
    start = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise SettingsError(
            f"settings file {path} is not UTF-8 text: byte 0x{data[offset]:02x} at offset "
            f"{offset} (line {line}) is not UTF-8; save it as UTF-8"
        ) from None


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that counts aliases and refuses a key written twice in one mapping."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise SettingsError(
                        f"line {line}: key {key!r} is written twice in one mapping (first on "
                        f"line {first_line[key]}); YAML would keep only the last: keep one"
                    )
                first_line[key] = line
            except TypeError:
                continue  # an unhashable key: the constructor below says so
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """The YAML document in ``text`` as Python data; raises ``SettingsError`` saying why not."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), 0, loader.aliases)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SettingsError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise SettingsError(_too_deep()) from None
    finally:
        loader.dispose()


def _expanded_size(
    node: Node, sizes: dict[int, int], open_: set[int], depth: int, aliases: int
) -> int:
    """How many values ``node`` stands for once every alias in it is written out."""
    if depth > MAX_DEPTH:
        raise SettingsError(_too_deep())
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise SettingsError(
            f"line {node.start_mark.line + 1}: a YAML alias refers to itself (to the value "
            "that contains it): write the value out instead"
        )
    open_.add(key)
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(_expanded_size(n, sizes, open_, depth + 1, aliases) for n in node.value)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_, depth + 1, aliases)
            size += _expanded_size(v, sizes, open_, depth + 1, aliases)
    open_.discard(key)
    if size > MAX_VALUES:
        how = " once its YAML aliases (*name) are expanded" if aliases else ""
        raise SettingsError(
            f"the settings file holds more than {MAX_VALUES} values{how}; settings need far "
            "fewer: write them out instead of repeating them through aliases"
        )
    sizes[key] = size
    return size


def _too_deep() -> str:
    return f"the settings file is nested too deep (more than {MAX_DEPTH} levels)"
