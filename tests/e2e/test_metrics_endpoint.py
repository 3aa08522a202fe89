"""/metrics scraped while Mailroom runs: its counters equal what the run made, as the
command line's JSON tells it; one endpoint for ``mailroom run``, one per ``mailroom worker``."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Mailroom
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

from bench.room import STAGES, mailroom

DEMO_MAILS = 12
COUNTERS = ("mailroom_mails_handled_total", "mailroom_dead_letters_total")


@dataclass(frozen=True)
class Scrape:
    """One scrape of /metrics: samples by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def of(cls, port: int) -> Scrape | None:
        """None while nothing answers on ``port`` (the process is starting)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
                text = got.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None
        return cls(
            {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
        )

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labelled(self, name: str, label: str) -> set[str]:
        """Every value of ``label`` among the samples of ``name``."""
        return {dict(k)[label] for (n, k) in self.samples if n == name and label in dict(k)}

    def __add__(self, other: Scrape) -> Scrape:
        """Counters of several processes, summed (gauges are not meant to be summed)."""
        summed = Counter[tuple[str, frozenset[tuple[str, str]]]]()
        for scrape in (self, other):
            for key, value in scrape.samples.items():
                if key[0] in COUNTERS:
                    summed[key] += value
        return Scrape(dict(summed))


def run_figures(room: Mailroom) -> dict[str, Any]:
    """What the run made, read back through the command line's JSON."""
    [box] = room.json("mailbox", "list")
    dead = room.json("dlq", "list")
    notes = room.json("notifications", "list")
    return {
        "outcomes": box["outcomes"],
        "error_count": box["error_count"],
        "dead_by_stage": dict(Counter(d["stage"] for d in dead)),
        "dead_entries": len(dead),
        "notifications": len(notes),
        "outbox_pending": sum(
            1
            for n in notes
            if n["channel"] == "email" and not n["sent_at"] and not n["suppressed_reason"]
        ),
    }


def counted(scrape: Scrape) -> dict[str, Any]:
    """The same figures, as the counters of the scrape tell them."""

    def handled(stage: str, outcome: str) -> int:
        return int(scrape.value("mailroom_mails_handled_total", stage=stage, outcome=outcome))

    routed = handled("router", "handled")
    dead = {
        stage: int(scrape.value("mailroom_dead_letters_total", stage=stage))
        for stage in scrape.labelled("mailroom_dead_letters_total", "stage")
    }
    return {
        "fetched": handled("poller", "fetched") + handled("poller", "dead_lettered"),
        "routed": routed,
        "parsed": handled("parser", "handled") + handled("parser", "dead_lettered"),
        "dead_by_stage": {stage: n for stage, n in dead.items() if n},
        "dead_recorded": handled("poller", "recorded"),
        "notifications": handled("notifier", "handled"),
    }


def expected(figures: dict[str, Any]) -> dict[str, Any]:
    outcomes = figures["outcomes"]
    return {
        "fetched": sum(outcomes.values()),
        # every outcome but a dead letter is the router's
        "routed": sum(n for outcome, n in outcomes.items() if outcome != "dead_lettered"),
        "parsed": sum(outcomes.values()),
        "dead_by_stage": figures["dead_by_stage"],
        "dead_recorded": figures["dead_entries"],
        "notifications": figures["notifications"],
    }


def agree(room: Mailroom, scrape: Scrape) -> bool:
    """True once every demo mail has its outcome and the counters tell what the JSON does."""
    figures = run_figures(room)
    return sum(figures["outcomes"].values()) == DEMO_MAILS and counted(scrape) == expected(figures)


def until_agreeing(
    room: Mailroom, scrape: Callable[[], Scrape | None], timeout: float = 180
) -> tuple[Scrape, dict[str, Any]]:
    """Scrape until the counters agree with the JSON figures (the last mails and their
    notifications are still on their way for a moment); fails showing both."""
    end = time.monotonic() + timeout
    got = None
    while time.monotonic() < end:
        got = scrape()
        if got is not None and agree(room, got):
            return got, run_figures(room)
        if room.exited_workers():
            raise AssertionError(f"exited: {room.exited_workers()}\n{room.worker_logs()}")
        time.sleep(0.5)
    figures = run_figures(room)
    raise AssertionError(
        f"counters {counted(got) if got else None} never matched {expected(figures)}\n"
        f"{room.worker_logs()}"
    )


def start_run(room: Mailroom, port: int) -> None:
    with (room.workdir / "run.log").open("ab") as log:
        room.workers["run"] = subprocess.Popen(
            mailroom("-v", "run", "--health-port", str(port)),
            env=room.env,
            cwd=room.workdir,
            stdout=log,
            stderr=log,
        )


def assert_store_gauges(scrape: Scrape, figures: dict[str, Any], started: float) -> None:
    box = {"helpdesk": "default", "mailbox": "demo"}
    assert scrape.value("mailroom_dead_letter_entries") == figures["dead_entries"]
    assert scrape.value("mailroom_mailbox_error_folder_mails", **box) == figures["error_count"]
    assert scrape.value("mailroom_mailbox_fetching", **box) == 1
    assert scrape.value("mailroom_mailbox_stopped_by_errors", **box) == 0
    assert scrape.value("mailroom_mailbox_consecutive_failures", **box) == 0
    polled = scrape.value("mailroom_mailbox_last_success_timestamp_seconds", **box)
    assert started <= polled <= time.time()
    assert scrape.value("mailroom_outbox_pending") == figures["outbox_pending"]
    assert scrape.value("mailroom_outbox_given_up") == 0


def test_mailroom_run_serves_counters_equal_to_what_the_run_made(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    room.use_demo_maildir()
    room.apply_settings()
    port = free_port()
    started = time.time()
    try:
        start_run(room, port)
        scrape, figures = until_agreeing(room, lambda: Scrape.of(port))
    finally:
        room.stop_workers()

    # the demo's mix: requests, conversations, one mail the parser could not read
    assert figures["outcomes"] == {
        "request_created": 8,
        "conversation_added": 3,
        "dead_lettered": 1,
    }
    assert figures["dead_by_stage"] == {"parser": 1}
    assert figures["notifications"] > 0
    # one endpoint for all five stages, each timing what it handled
    assert scrape.labelled("mailroom_mails_handled_total", "stage") == set(STAGES)
    for stage in ("parser", "validator", "router", "notifier"):
        finished = scrape.value(
            "mailroom_mails_handled_total", stage=stage, outcome="handled"
        ) + scrape.value("mailroom_mails_handled_total", stage=stage, outcome="dead_lettered")
        assert scrape.value("mailroom_handling_seconds_count", stage=stage) == finished
    assert_store_gauges(scrape, figures, started)


def test_each_worker_serves_its_own_stage_and_together_they_count_the_run(
    scaled: Mailroom,
) -> None:
    scaled.use_demo_maildir()
    scaled.apply_settings()
    ports = {stage: free_port() for stage in STAGES}
    started = time.time()
    for stage in STAGES:
        scaled.start_worker(stage, health_port=ports[stage])

    def scrape_all() -> Scrape | None:
        scrapes = {stage: Scrape.of(port) for stage, port in ports.items()}
        if any(s is None for s in scrapes.values()):
            return None
        total = Scrape({})
        for s in scrapes.values():
            total = total + s  # type: ignore[operator]
        return total

    until_agreeing(scaled, scrape_all)

    figures = run_figures(scaled)
    for stage, port in ports.items():
        own = Scrape.of(port)
        assert own is not None
        # each worker counts and times only its own stage, from the start
        assert own.labelled("mailroom_mails_handled_total", "stage") == {stage}
        assert own.labelled("mailroom_handling_seconds_count", "stage") == {stage}
        # and shows the store's gauges, which whatever process wrote them
        assert_store_gauges(own, figures, started)
