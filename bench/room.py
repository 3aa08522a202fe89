"""One Mailroom deployment driven through its command line, as an operator would drive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Stopped:
    """How a worker ended after SIGTERM: its exit status (None: it had to be killed) and
    the seconds it took."""

    status: int | None
    seconds: float


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
        return self.start_command(name, "worker", stage, *health)

    def start_command(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``mailroom ARGS`` as the worker ``name`` (``run``, say), its output in
        ``NAME.log``."""
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                mailroom(*args), env=self.env, cwd=self.workdir, stdout=log, stderr=log
            )
        self.workers[name] = proc
        return proc

    def start_workers(self, per_stage: int = 1) -> None:
        """``per_stage`` workers of each stage, named after it (``parser-2`` beyond one)."""
        for stage in STAGES:
            for n in range(1, per_stage + 1):
                self.start_worker(stage, stage if per_stage == 1 else f"{stage}-{n}")

    def exited_workers(self) -> dict[str, int]:
        """Stage -> exit status of every worker that is no longer running."""
        codes = {stage: proc.poll() for stage, proc in self.workers.items()}
        return {stage: code for stage, code in codes.items() if code is not None}

    def peak_memory(self) -> dict[str, float | None]:
        return {stage: vm_hwm_mib(proc.pid) for stage, proc in self.workers.items()}

    def worker_log(self, stage: str) -> str:
        return tail((self.workdir / f"{stage}.log").read_text(errors="replace"))

    def terminate(self, *names: str, wait_s: float = 30) -> dict[str, Stopped]:
        """SIGTERM the workers ``names`` (every one when none is named) at once; how each
        ended. One still running after ``wait_s`` is killed (its status is then None)."""
        procs = {n: self.workers.pop(n) for n in names or list(self.workers)}
        start = time.monotonic()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        ended: dict[str, Stopped] = {}
        while len(ended) < len(procs) and time.monotonic() - start < wait_s:
            for name, proc in procs.items():
                if name not in ended and proc.poll() is not None:
                    ended[name] = Stopped(proc.returncode, time.monotonic() - start)
            time.sleep(0.05)
        for name, proc in procs.items():
            if name not in ended:
                proc.kill()
                proc.wait()
                ended[name] = Stopped(None, time.monotonic() - start)
        return ended

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
