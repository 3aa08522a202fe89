"""The deployment's example settings file, and the mailboxes its comments offer, are valid."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.settings import parse_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "settings.example.yaml"


def commented_mailboxes(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if re.match(r"^ *#   ", line)]
    blocks, current = [], ""
    for line in lines:
        body = re.sub(r"^ *#   ", "", line)
        if body.startswith("- {"):
            current = body
        else:
            current += " " + body.strip()
        if current.endswith("}"):
            blocks.append(current[2:])
    return blocks


def test_the_example_settings_file_is_valid():
    parse_settings(EXAMPLE.read_text(), env={})


def test_each_mailbox_offered_in_a_comment_is_valid():
    offered = commented_mailboxes(EXAMPLE.read_text())
    env = {"SUPPORT_PASSWORD": "pw", "GRAPH_CLIENT_SECRET": "s"}

    assert len(offered) == 2, offered
    for mailbox in offered:
        parse_settings(f"helpdesks:\n  - id: d\n    mailboxes:\n      - {mailbox}\n", env=env)
