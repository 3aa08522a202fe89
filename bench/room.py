"""One Mailroom deployment driven through its command line, as an operator would drive it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from bench.mailgen import fill_maildir
from bench.procs import REPO, tail, vm_hwm_mib

STAGES = ("poller", "parser", "validator", "router", "notifier")
MAILBOX = "bench"


def mailroom(*args: str) -> list[str]:
    """The ``mailroom`` command line, run by this interpreter."""
    return [sys.executable, "-m", "services.cli", *args]


def settings_for(maildir: Path) -> dict[str, Any]:
    """One help desk polling ``maildir``, with the demo's attachment rules."""
    mailbox = {
        "name": MAILBOX,
        "protocol": "maildir",
        "path": str(maildir),
        "addresses": ["support@demo.example"],
        # Every generated broken mail ends in the error folder: fetching must not stop.
        "error_folder": {"enabled": True, "name": "Errors", "stop_after": 100_000},
    }
    return helpdesk_settings(mailbox, max_attachment_mb=1)


def helpdesk_settings(mailbox: dict[str, Any], *, max_attachment_mb: float) -> dict[str, Any]:
    """One help desk named ``bench`` with the demo's notifications and one ``mailbox``."""
    helpdesk = {
        "id": "bench",
        "attachments": {
            "max_size_mb": max_attachment_mb,
            "restricted_extensions": ["exe", "bat", "js"],
        },
        "notifications": {"support_reps": ["reps@bench.example"], "admins": ["a@bench.example"]},
        "mailboxes": [mailbox],
    }
    return {"helpdesks": [helpdesk]}


class Room:
    """A broker URL, a database URL, a work folder and its Maildir; worker processes."""

    def __init__(self, workdir: Path, broker_url: str, database_url: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.maildir = workdir / "Maildir"
        self.env = {
            **os.environ,
            "MAILROOM_BROKER_URL": broker_url,
            "MAILROOM_DATABASE_URL": database_url,
            "MAILROOM_VAR_DIR": str(workdir / "var"),
            "MAILROOM_SECRET_KEY": Fernet.generate_key().decode(),
            "PYTHONPATH": str(REPO),
            # The same hash order in every run: one source of run-to-run noise less.
            "PYTHONHASHSEED": "0",
        }
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def prepare(self, count: int) -> None:
        """Write ``count`` generated mails into the Maildir and load settings that poll it."""
        fill_maildir(self.maildir, count)
        self.apply(settings_for(self.maildir))

    def apply(self, settings: dict[str, Any]) -> None:
        """Load ``settings`` with ``mailroom config apply``, as an operator would."""
        path = self.workdir / "settings.yaml"
        path.write_text(yaml.safe_dump(settings))
        done = subprocess.run(
            mailroom("config", "apply", str(path)), env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"mailroom config apply failed:\n{done.stderr}")

    def start_worker(
        self, stage: str, name: str | None = None, *, health_port: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``mailroom worker STAGE``, known as ``name`` (the stage when None); its
        output goes to ``NAME.log`` in the work folder."""
        name = name or stage
        health = ["--health-port", str(health_port)] if health_port is not None else []
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                mailroom("worker", stage, *health),
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
            )
        self.workers[name] = proc
        return proc

    def start_workers(self) -> None:
        for stage in STAGES:
            self.start_worker(stage)

    def exited_workers(self) -> dict[str, int]:
        """Stage -> exit status of every worker that is no longer running."""
        codes = {stage: proc.poll() for stage, proc in self.workers.items()}
        return {stage: code for stage, code in codes.items() if code is not None}

    def peak_memory(self) -> dict[str, float | None]:
        return {stage: vm_hwm_mib(proc.pid) for stage, proc in self.workers.items()}

    def worker_log(self, stage: str) -> str:
        return tail((self.workdir / f"{stage}.log").read_text(errors="replace"))

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()
