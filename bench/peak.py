"""Run a command and report its own peak RSS: ``python -m bench.peak REPORT COMMAND...``.

Linux counts the memory of the process that calls exec into the new program's
``ru_maxrss``. Spawned straight from the bench (tens of MiB of rich, pika, SQLAlchemy...),
a child would report at least the bench's size. Spawned from this small launcher, the floor
is a bare interpreter's few MiB, below the peak of any Python program it measures.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(report: str, command: list[str]) -> int:
    """Run ``command`` with this process's streams; write its seconds and peak RSS as JSON."""
    start = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    with open(report, "w") as out:
        json.dump({"seconds": seconds, "peak_rss_kib": usage.ru_maxrss}, out)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
