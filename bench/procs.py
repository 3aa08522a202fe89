"""Child processes measured from outside: wall time and peak resident memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Finished:
    """A child process that ran to its end."""

    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    command: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> Finished:
    """Run ``command`` to its end (killed after ``timeout`` s); time it and take its peak RSS.

    It is started through ``bench.peak``, which takes both figures from the child alone: the
    bench's own memory would otherwise count as the child's (see that module).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "peak.json"
        launcher = [sys.executable, "-m", "bench.peak", str(report), *command]
        done = _run(launcher, env={**env, "PYTHONPATH": str(REPO)}, cwd=cwd, timeout=timeout)
        figures = json.loads(report.read_text()) if report.exists() else {}
    seconds = figures.get("seconds", timeout)
    peak = figures.get("peak_rss_kib", 0) / 1024
    return Finished(seconds, peak, done.returncode, done.stdout, done.stderr)


def _run(
    command: list[str], *, env: dict[str, str], cwd: Path | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    # A session of its own, so that a timeout kills the measured child along with the launcher.
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        text=True,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident memory of a live process so far (Linux ``VmHWM``); None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024 if "VmHWM" in fields else None


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
