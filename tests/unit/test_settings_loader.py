"""The settings file as bytes and YAML: what cannot be read safely is refused, never run."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from contracts.settings import SettingsError, load_settings_file, parse_settings

GOOD = "helpdesks:\n  - id: default\n    mailboxes: [{name: a, protocol: maildir, path: /m}]\n"


def refusal_of_file(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings_file(path, env={})
    return str(caught.value)


def refusal(text: str) -> str:
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, env={})
    return str(caught.value)


def test_a_file_that_is_not_utf8_is_refused_with_the_byte_offset(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_bytes(GOOD.replace("default", "d\xe9faut").encode("latin-1"))

    message = refusal_of_file(path)

    assert "not UTF-8" in message
    assert "byte 0xe9 at offset 20 (line 2)" in message
    assert "save it as UTF-8" in message


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())

    assert load_settings_file(path, env={}).helpdesks[0].id == "default"


def test_a_file_too_big_for_settings_is_refused_before_reading_it_all(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_bytes(GOOD.encode() + b"#" * (2 * 1024 * 1024))

    message = refusal_of_file(path)

    assert "larger than 1 MiB" in message


def test_a_key_written_twice_is_refused_naming_the_key_and_both_lines():
    text = textwrap.dedent(
        """\
        helpdesks:
          - id: default
            mailboxes:
              - name: a
                protocol: maildir
                path: /m
                path: /other
        """
    )

    message = refusal(text)

    assert "key 'path' is written twice" in message
    assert "line 6" in message and "line 7" in message


def test_the_top_level_key_written_twice_is_refused():
    message = refusal(GOOD + "helpdesks: []\n")

    assert "key 'helpdesks' is written twice" in message


def test_an_alias_bomb_is_refused_before_it_is_expanded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    text = "\n".join(lines) + "\nhelpdesks: *a9\n"

    message = refusal(text)

    assert "aliases" in message
    assert "100000 values" in message


def test_an_alias_that_contains_itself_is_refused():
    message = refusal("helpdesks: &loop [*loop]\n")

    assert "refers to itself" in message


def test_deep_nesting_is_refused_without_a_crash():
    message = refusal("helpdesks: " + "[" * 5000 + "]" * 5000 + "\n")

    assert "nested too deep" in message


def test_a_few_anchors_and_aliases_to_share_settings_still_work():
    text = textwrap.dedent(
        """\
        helpdesks:
          - id: one
            notifications: &people {support_reps: [reps@example.com], admins: [boss@example.com]}
          - id: two
            notifications: *people
        """
    )

    settings = parse_settings(text, env={})

    assert [d.notifications.admins for d in settings.helpdesks] == [["boss@example.com"]] * 2


def _waited(signum: int, frame: object) -> None:
    raise AssertionError("the loader waited on a named pipe")


def _pipe(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "settings.yaml")
    return tmp_path / "settings.yaml"


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "settings.yaml").mkdir()
    return tmp_path / "settings.yaml"


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_pipe, "a named pipe"), (_folder, "a folder"), (lambda _: Path("/dev/zero"), "a device")],
)
def test_a_settings_path_that_is_no_file_is_refused_saying_what_it_is(tmp_path, make, kind):
    # A named pipe nobody writes to would wait for ever: the test fails instead of hanging
    signal.signal(signal.SIGALRM, _waited)
    signal.alarm(20)
    try:
        message = refusal_of_file(make(tmp_path))
    finally:
        signal.alarm(0)

    assert f"is {kind}, not a file" in message
