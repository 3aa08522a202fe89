"""What the stages count for /metrics: outcomes, handling time and dead letters, per stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY, CollectorRegistry

from contracts import queues
from contracts.base import Envelope
from contracts.mail import MailFetched, SourceRef
from services.runtime.bus import Delivery
from services.runtime.crypto import SecretBox
from services.runtime.dispatch import Dispatcher, ErrorLog
from services.runtime.errors import MailError, StoreOutage
from services.runtime.metrics import StageMetrics, measured
from services.runtime.testing import InMemoryBlobStore

FETCHED = MailFetched(
    mail_id="mail-1",
    helpdesk="default",
    source=SourceRef(mailbox="support", ref="1700000000.M1P1.host"),
    raw_blob="raw-sha",
    size=120,
)


class Registry:
    """A registry of its own, and what it holds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def handled(self, stage: str, outcome: str) -> float | None:
        labels = {"stage": stage, "outcome": outcome}
        return self.registry.get_sample_value("mailroom_mails_handled_total", labels)

    def dead(self, stage: str) -> float | None:
        return self.registry.get_sample_value("mailroom_dead_letters_total", {"stage": stage})

    def timings(self, stage: str) -> tuple[float | None, float | None]:
        labels = {"stage": stage}
        count = self.registry.get_sample_value("mailroom_handling_seconds_count", labels)
        total = self.registry.get_sample_value("mailroom_handling_seconds_sum", labels)
        return count, total

    def within(self, stage: str, seconds: float) -> float | None:
        labels = {"stage": stage, "le": str(seconds)}
        return self.registry.get_sample_value("mailroom_handling_seconds_bucket", labels)


class Ticks:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def dispatcher(
    reg: Registry, handler: Callable[[MailFetched], Sequence[Envelope]], ticks: Ticks
) -> tuple[Dispatcher, list[Envelope]]:
    published: list[Envelope] = []
    box = SecretBox(Fernet.generate_key())
    dispatch = Dispatcher(
        stage="parser",
        handler=handler,
        publish=published.append,
        error_log=ErrorLog(InMemoryBlobStore(), box),
        sleep=lambda _s: None,
        metrics=StageMetrics(reg.registry, ["parser"]),
        monotonic=ticks,
    )
    return dispatch, published


def delivery(body: bytes | None = None) -> Delivery:
    return Delivery(queues.MAIL_FETCHED, body or FETCHED.model_dump_json().encode())


def test_every_outcome_of_the_stages_a_process_runs_is_shown_at_zero_from_the_start():
    reg = Registry()
    StageMetrics(reg.registry, ["poller", "parser"])

    assert reg.handled("parser", "handled") == 0
    assert reg.handled("parser", "dead_lettered") == 0
    assert reg.handled("poller", "fetched") == 0
    assert reg.dead("parser") == 0
    assert reg.timings("poller") == (0, 0)
    assert reg.handled("router", "handled") is None  # this process runs no router


def test_metrics_live_in_the_registry_passed_in_never_the_process_wide_one():
    first, second = Registry(), Registry()
    StageMetrics(first.registry, ["parser"]).handled("parser", "handled", 3)
    StageMetrics(second.registry, ["parser"])  # a second process's worth: no name clash

    assert first.handled("parser", "handled") == 3
    assert second.handled("parser", "handled") == 0
    assert (
        REGISTRY.get_sample_value(
            "mailroom_mails_handled_total", {"stage": "parser", "outcome": "handled"}
        )
        is None
    )


def test_a_handled_mail_is_counted_with_its_handling_time():
    reg, ticks = Registry(), Ticks(step=0.2)
    dispatch, published = dispatcher(reg, lambda msg: [], ticks)

    assert dispatch(delivery()) == "ack"

    assert reg.handled("parser", "handled") == 1
    assert reg.handled("parser", "dead_lettered") == 0
    assert reg.dead("parser") == 0
    assert reg.timings("parser") == (1, pytest.approx(0.2))
    assert reg.within("parser", 0.1) == 0 and reg.within("parser", 0.25) == 1


def test_a_bad_mail_is_counted_as_dead_lettered_once_its_entry_is_published():
    reg = Registry()

    def refuse(msg: MailFetched) -> list[Envelope]:
        raise MailError("not a mail")

    dispatch, published = dispatcher(reg, refuse, Ticks(step=0.01))

    dispatch(delivery())

    assert [type(m).__name__ for m in published] == ["DeadLetter"]
    assert reg.handled("parser", "dead_lettered") == 1
    assert reg.handled("parser", "handled") == 0
    assert reg.dead("parser") == 1
    assert reg.timings("parser")[0] == 1


def test_a_message_that_breaks_its_contract_is_a_dead_letter_of_its_stage():
    reg = Registry()
    dispatch, _ = dispatcher(reg, lambda msg: [], Ticks(step=0.01))

    dispatch(delivery(b'{"not": "a MailFetched"}'))

    assert reg.dead("parser") == 1 and reg.handled("parser", "dead_lettered") == 1


def test_a_handling_cut_short_by_an_outage_is_not_counted_it_is_handled_again():
    reg = Registry()

    def store_down(msg: MailFetched) -> list[Envelope]:
        raise StoreOutage("database cannot be reached")

    dispatch, _ = dispatcher(reg, store_down, Ticks(step=0.01))

    with pytest.raises(StoreOutage):
        dispatch(delivery())

    assert reg.handled("parser", "handled") == 0
    assert reg.handled("parser", "dead_lettered") == 0
    assert reg.timings("parser") == (0, 0)


def test_a_consumer_whose_outcome_is_its_action_is_counted_by_that_action():
    reg = Registry()
    metrics = StageMetrics(reg.registry, ["poller"])
    actions = iter(["ack", "requeue", "ack"])
    handle = measured(
        "poller",
        lambda d: next(actions),
        metrics,
        {"ack": "recorded", "requeue": "requeued"},
        monotonic=Ticks(step=0.5),
    )

    results = [handle(delivery()) for _ in range(3)]

    assert results == ["ack", "requeue", "ack"]  # the action itself is passed on
    assert reg.handled("poller", "recorded") == 2
    assert reg.handled("poller", "requeued") == 1
    assert reg.timings("poller") == (3, pytest.approx(1.5))


def test_nothing_is_added_for_a_count_of_zero():
    reg = Registry()
    metrics = StageMetrics(reg.registry)

    metrics.handled("poller", "fetched", 0)
    metrics.dead_lettered("poller", 0)

    assert reg.handled("poller", "fetched") is None and reg.dead("poller") is None
