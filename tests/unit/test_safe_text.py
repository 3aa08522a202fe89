"""Text from mail is shown with its control and bidi characters visible, never obeyed."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from services.cli.app import ShownFormatter
from services.safe_text import json_text, shown

ESC_RED = "\x1b[31m"


@pytest.mark.parametrize(
    ("raw", "seen"),
    [
        ("Printer jam", "Printer jam"),
        ("Grüße, 請求書, Ελληνικά, 👍", "Grüße, 請求書, Ελληνικά, 👍"),
        (f"{ESC_RED}URGENT", "\\x1b[31mURGENT"),
        ("invoice\u202efdp.exe", "invoice\\u202efdp.exe"),
        ("a\x00b\x07c\x08d\x7fe", "a\\x00b\\x07c\\x08d\\x7fe"),
        ("line\r\nfake row", "line\\r\\nfake row"),
        ("tab\there", "tab\\there"),
        ("c1\x9bcsi\x85nel", "c1\\x9bcsi\\x85nel"),
        (
            "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069",
            "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069",
        ),
        ("lrm\u200erlm\u200falm\u061c", "lrm\\u200erlm\\u200falm\\u061c"),
        ("zero\u200bwidth\u200c\u200d\u2060\ufeff", "zero\\u200bwidth\\u200c\\u200d\\u2060\\ufeff"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("undecodable \udcff byte", "undecodable \\udcff byte"),
        ("[bold red]markup[/] :smile:", "[bold red]markup[/] :smile:"),
    ],
)
def test_control_and_bidi_characters_are_shown_escaped(raw: str, seen: str) -> None:
    assert shown(raw) == seen


def test_line_breaks_can_be_kept_for_multi_line_text() -> None:
    assert shown(f"one\n{ESC_RED}two\tthree", keep_lines=True) == "one\n\\x1b[31mtwo\tthree"


@pytest.mark.parametrize(
    "value",
    [
        "invoice\u202efdp.exe",
        f"{ESC_RED}red",
        "zero\u200bwidth \u2066isolate\u2069",
        "tag\U000e0041 and \U0001f44d",
        "undecodable \udcff byte",
        "Grüße 請求書",
    ],
)
def test_json_escapes_control_and_bidi_characters_and_reads_back_the_same(value: str) -> None:
    data = {"subject": value, "files": [value], value: 1}

    text = json_text(data)

    assert "\u202e" not in text and "\x1b" not in text and "\u200b" not in text
    assert "\U000e0041" not in text and "\udcff" not in text
    assert all(ord(c) < 0x80 or c.isprintable() or c == "\n" for c in text)
    if "\udcff" not in value:
        assert json.loads(text) == data
    assert "Grüße" in json_text("Grüße"), "readable text stays readable"


def test_json_shows_dates_and_other_values_as_text() -> None:
    from datetime import UTC, datetime

    assert json.loads(json_text({"at": datetime(2026, 1, 2, tzinfo=UTC)})) == {
        "at": "2026-01-02 00:00:00+00:00"
    }


def test_a_log_message_is_one_line_whatever_it_quotes() -> None:
    # A Maildir file name or subject that would add a forged line to the log
    formatter = ShownFormatter("%(levelname)s %(message)s")
    forged = "key\n2026-12-05 01:00:00 ERROR mailroom: all mail deleted\x1b[2K"
    record = logging.LogRecord(
        "t", logging.WARNING, __file__, 1, "mail %s skipped", (forged,), None
    )

    line = formatter.format(record)

    assert line == (
        "WARNING mail key\\n2026-12-05 01:00:00 ERROR mailroom: all mail deleted\\x1b[2K skipped"
    )


def test_a_logged_traceback_keeps_its_lines() -> None:
    formatter = ShownFormatter("%(message)s")
    try:
        raise ValueError("bad\x1b[31m")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    lines = formatter.format(record).split("\n")

    assert lines[0] == "failed" and lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad\\x1b[31m"
