"""Drives ``mailroom`` as a user would: separate processes, results read through ``--json``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.room import Room, mailroom

MAILROOM = mailroom()
DEMO = Path(__file__).resolve().parents[2] / "demo"


def settings_yaml(maildir: Path, *, max_size_mb: float = 1, mailbox: str = "demo") -> str:
    """The demo settings with the Maildir path pointed at ``maildir``, polled every 3 s."""
    text = (DEMO / "settings.yaml").read_text()
    text = text.replace("path: ../var/demo/Maildir", f"path: {maildir}")
    text = text.replace("fetch_every_minutes: 1", "fetch_every_minutes: 0.05")
    text = text.replace("max_size_mb: 1,", f"max_size_mb: {max_size_mb},")
    assert str(maildir) in text, "demo/settings.yaml no longer names ../var/demo/Maildir"
    return text.replace("name: demo", f"name: {mailbox}")


class Mailroom(Room):
    """One deployment (see ``bench.room.Room``) plus what tests read and check."""

    @classmethod
    def on_sqlite(cls, tmp_path: Path) -> Mailroom:
        """The embedded default: the in-memory broker and SQLite in the room's data folder."""
        return cls(tmp_path, "memory://", f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}")

    @property
    def embedded(self) -> bool:
        return self.env["MAILROOM_BROKER_URL"].startswith("memory://")

    def use_demo_maildir(self) -> None:
        shutil.copytree(DEMO / "Maildir", self.maildir)

    def apply_settings(self, text: str | None = None) -> None:
        path = self.workdir / "settings.yaml"
        path.write_text(text or settings_yaml(self.maildir))
        self.cli("config", "apply", str(path))

    def cli(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*MAILROOM, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"mailroom {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    # -- worker processes --------------------------------------------------------------------

    def kill_worker(self, stage: str) -> None:
        """``kill -9``: no cleanup, no acks, like a crashed host."""
        proc = self.workers.pop(stage)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in self.workdir.glob("*.log")
        )

    # -- results -----------------------------------------------------------------------------

    def accounted_mail_ids(self) -> list[str]:
        """Every mail id that ended as a request mail or a dead-letter entry (with repeats)."""
        requests = self.json("requests", "list")
        dead = self.json("dlq", "list")
        return [m["mail_id"] for r in requests for m in r["mails"]] + [d["mail_id"] for d in dead]

    def wait_for(self, done: Callable[[], bool], *, timeout: float = 180, what: str = "") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done():
                return
            if self.exited_workers():
                raise AssertionError(
                    f"worker(s) {self.exited_workers()} exited\n{self.worker_logs()}"
                )
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{self.worker_logs()}")
