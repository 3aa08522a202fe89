"""Child processes measured from outside: wall time and peak resident memory."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Finished:
    """A child process that ran to its end."""

    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    command: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 180
) -> Finished:
    """Run ``command`` to its end (killed after ``timeout`` s); time it and take its peak RSS.

    ``os.wait4`` reports the rusage of this one child, where ``RUSAGE_CHILDREN`` would give
    the maximum over every child reaped so far (``config apply``, the baselines...).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        return Finished(seconds, usage.ru_maxrss / 1024, proc.returncode, _text(out), _text(err))


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


def _text(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")
