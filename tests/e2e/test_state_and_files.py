"""State found where it was left, files written safely, and errors a script can read."""

from __future__ import annotations

import json
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from harness import MAILROOM, Mailroom, settings_yaml
from test_demo_mailbox import process_demo


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    """The embedded default as a new user has it: the data folder from MAILROOM_VAR_DIR (no
    database URL, no key in the environment)."""
    room = Mailroom(tmp_path, "memory://", "unused")
    del room.env["MAILROOM_DATABASE_URL"], room.env["MAILROOM_SECRET_KEY"]
    return room


def run_in(room: Mailroom, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mailroom ARGS`` run from ``folder``, with no terminal on stdin."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*MAILROOM, *args],
        env=room.env,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- the data folder ---------------------------------------------------------------------------


def test_the_default_data_folder_is_found_from_any_folder(room: Mailroom, tmp_path) -> None:
    del room.env["MAILROOM_VAR_DIR"]
    room.env["XDG_STATE_HOME"] = str(tmp_path / "state")
    process_demo(room)
    elsewhere = tmp_path / "elsewhere"

    listed = run_in(room, elsewhere, "requests", "list", "--json")

    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 8
    assert list(elsewhere.iterdir()) == [], "no ./var is made where the command runs"
    data = tmp_path / "state" / "mailroom"
    assert mode(data) == 0o700
    assert {p.name: mode(p) for p in data.iterdir()} == {p.name: 0o600 for p in data.iterdir()}


def test_a_command_without_a_store_says_where_it_looked_and_makes_nothing(
    room: Mailroom, tmp_path
) -> None:
    for args in (("requests", "list"), ("errors", "download", "--out", "e.zip"), ("run", "--once")):
        err = refused(run_in(room, tmp_path / "elsewhere", *args))

        assert err.strip() == (
            f"mailroom: no Mailroom data at {tmp_path / 'var'}; run `mailroom config apply "
            "SETTINGS` first or set MAILROOM_VAR_DIR"
        )
    assert not (tmp_path / "var").exists()
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_deleted_key_is_an_error_that_explains_and_is_never_replaced(room: Mailroom) -> None:
    process_demo(room)
    key_file = room.workdir / "var" / "secret.key"
    key_file.unlink()

    for args in (("mailbox", "list"), ("config", "apply", "settings.yaml"), ("run", "--once")):
        err = refused(room.cli(*args, check=False))

        assert f"the key file {key_file} is missing" in err
        assert "restore the key file from a backup, or set MAILROOM_SECRET_KEY" in err
        assert not key_file.exists()


def test_relative_paths_in_a_settings_file_are_relative_to_the_file(room: Mailroom) -> None:
    room.use_demo_maildir()
    conf = room.workdir / "conf"
    conf.mkdir()
    (conf / "settings.yaml").write_text(settings_yaml(Path("../Maildir")))

    applied = run_in(room, room.workdir / "a", "config", "apply", str(conf / "settings.yaml"))
    summary = run_in(room, room.workdir / "b", "run", "--once", "--json")

    assert applied.returncode == 0, applied.stderr
    assert json.loads(summary.stdout)["fetched"] == 12
    shown = json.loads(run_in(room, room.workdir / "c", "mailbox", "show", "demo", "--json").stdout)
    assert shown["settings"]["path"] == str(room.maildir)


# -- errors download -----------------------------------------------------------------------------


@pytest.fixture
def failed(room: Mailroom) -> Mailroom:
    process_demo(room)
    return room


def test_the_download_is_private_and_an_existing_file_needs_force(failed: Mailroom) -> None:
    out = failed.workdir / "errors.zip"
    out.write_bytes(b"an earlier download")

    err = refused(failed.cli("errors", "download", "--out", str(out), check=False))
    assert err.strip() == f"mailroom: {out} exists; add --force to replace it"
    assert out.read_bytes() == b"an earlier download"

    failed.cli("errors", "download", "--out", str(out), "--force")
    assert zipfile.ZipFile(out).namelist() and mode(out) == 0o600


def test_the_download_never_writes_through_a_link(failed: Mailroom) -> None:
    victim = failed.workdir / "victim.txt"
    victim.write_text("precious")
    link = failed.workdir / "errors.zip"
    link.symlink_to(victim)

    refused(failed.cli("errors", "download", "--out", str(link), check=False))
    failed.cli("errors", "download", "--out", str(link), "--force")

    assert victim.read_text() == "precious"
    assert not link.is_symlink() and zipfile.is_zipfile(link)


@pytest.mark.parametrize(
    ("out", "said"),
    [
        ("", "--out is empty: name the zip to write, e.g. --out errors.zip"),
        (".", "is a folder: name a file in it"),
        ("nowhere/errors.zip", "nowhere does not exist: create it or write elsewhere"),
    ],
)
def test_a_download_target_that_cannot_be_written_is_one_clear_line(
    failed: Mailroom, out: str, said: str
) -> None:
    err = refused(failed.cli("errors", "download", "--out", out, "--force", check=False))

    assert said in err and err.strip().count("\n") == 0
    assert not (failed.workdir / "nowhere").exists()


def test_an_unknown_mailbox_is_an_error_and_the_old_zip_is_kept(failed: Mailroom) -> None:
    out = failed.workdir / "errors.zip"
    failed.cli("errors", "download", "--out", str(out))
    before = out.read_bytes()

    err = refused(
        failed.cli(
            "errors", "download", "--out", str(out), "--mailbox", "nosuch", "--force", check=False
        )
    )

    assert "no mailbox named 'nosuch' (configured: demo)" in err
    assert out.read_bytes() == before


# -- prompts and JSON errors ---------------------------------------------------------------------


def test_purge_without_a_terminal_refuses_at_once_and_says_to_use_yes(failed: Mailroom) -> None:
    err = refused(run_in(failed, failed.workdir, "dlq", "purge"))

    assert "use --yes to purge without a prompt" in err
    assert len(failed.json("dlq", "list")) == 1, "nothing purged"


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (("dlq", "show", "999"), "no dead-letter entry 999", None),
        (("mailbox", "show", "nosuch"), "no mailbox named 'nosuch' (configured: demo)", None),
        (("dlq", "show", "abc"), "'abc' is not a valid integer", "dlq show --help`"),
    ],
)
def test_a_failing_json_command_prints_a_json_error_and_keeps_its_status(
    failed: Mailroom, args: tuple[str, ...], error: str, hint: str | None
) -> None:
    done = failed.cli(*args, "--json", check=False)

    assert done.returncode == 2, done.stderr
    said = json.loads(done.stdout)
    assert set(said) == {"error", "hint"}
    assert error in said["error"]
    assert hint is None or hint in said["hint"]
    assert done.stderr.startswith(("mailroom:", "Usage:"))


def test_a_json_command_without_a_store_says_what_to_do_in_json(room: Mailroom, tmp_path) -> None:
    done = run_in(room, tmp_path, "requests", "list", "--json")

    assert done.returncode == 2
    assert json.loads(done.stdout) == {
        "error": f"no Mailroom data at {tmp_path / 'var'}",
        "hint": "run `mailroom config apply SETTINGS` first or set MAILROOM_VAR_DIR",
    }
