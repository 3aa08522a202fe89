"""The faults of a chaos run: worker kills on a timer, and server outages on cue.

Every fault is recorded with when it began, when the server was back, and when the pipeline
next made progress, so the run can print how long recovery took and fail when a fault could
not be injected.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.room import Room


@dataclass
class Fault:
    """One server fault: what it was, and its times (monotonic seconds)."""

    name: str
    began: float | None = None
    back: float | None = None
    progressed: float | None = None
    #: Outcomes on record when the server was back; progress means more than these.
    done_when_back: int = 0

    @property
    def injected(self) -> bool:
        return self.began is not None and self.back is not None

    @property
    def down_s(self) -> float | None:
        return self.back - self.began if self.injected else None  # type: ignore[operator]

    @property
    def recovered_s(self) -> float | None:
        """From the server being back to the pipeline's next new outcome."""
        if self.back is None or self.progressed is None:
            return None
        return self.progressed - self.back


@dataclass(frozen=True)
class ServerFault:
    """A fault on cue: ``act`` takes the server down and brings it back."""

    name: str
    act: Callable[[], None]


def inject(fault: ServerFault, done: Callable[[], int]) -> Fault:
    """Run ``fault``; ``done`` counts the outcomes, read once the server is back."""
    record = Fault(fault.name, began=time.monotonic())
    fault.act()
    record.back = time.monotonic()
    record.done_when_back = done()
    return record


def outage(down: Callable[[], None], up: Callable[[], None], seconds: float) -> Callable[[], None]:
    """Take a server down, keep it down ``seconds``, bring it back."""

    def act() -> None:
        down()
        time.sleep(seconds)
        up()

    return act


@dataclass
class WorkerKiller:
    """Every few seconds, ``kill -9`` one running worker and start it again.

    Runs on a thread of its own until ``stop``; ``kills`` counts the workers it killed.
    """

    room: Room
    stages: dict[str, str]  # worker name -> stage
    every_s: tuple[float, float]
    rng: random.Random
    kills: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WorkerKiller:
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.every_s)):
            self.kill_one()

    def kill_one(self) -> None:
        name = self.rng.choice(sorted(self.stages))
        with self._lock:
            proc = self.room.workers.get(name)
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.kills += 1
            self.room.start_worker(self.stages[name], name)
