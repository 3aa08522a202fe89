"""A mail the parser never finishes would hang the fuzz test and leave nothing behind: the
watchdog saves it like any failing mail, prints where every thread is, and ends the process
(pytest-xdist then reports the test as failed with its worker)."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fuzz_mails import FuzzedMail
from fuzz_pipeline import save


class Watchdog:
    def __init__(self, limit_seconds: float) -> None:
        self.limit = limit_seconds
        self._current: tuple[FuzzedMail, float] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fuzz-watchdog", daemon=True)

    @contextmanager
    def running(self) -> Iterator[Watchdog]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stopped.set()
            self._thread.join()

    @contextmanager
    def watching(self, mail: FuzzedMail) -> Iterator[None]:
        self._current = (mail, time.monotonic())
        try:
            yield
        finally:
            self._current = None

    def _watch(self) -> None:
        while not self._stopped.wait(1.0):
            current = self._current
            if current is not None and time.monotonic() - current[1] > self.limit:
                self._give_up(current[0])

    def _give_up(self, mail: FuzzedMail) -> None:
        path = save(mail.raw, f"hang: still running after {self.limit:.0f} s", mail.how)
        sys.stderr.write(f"\nfuzz: {mail!r} does not end; saved as {path}\n")
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)
