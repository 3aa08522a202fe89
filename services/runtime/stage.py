"""What a stage's ``build()`` returns, and the wiring every stage shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kombu import Connection

from contracts.settings import Settings
from services.runtime.batches import BatchDispatcher
from services.runtime.bus import Batched, Handle, Publisher
from services.runtime.clock import SystemClock
from services.runtime.crypto import SecretBox
from services.runtime.delivery_starts import SqlDeliveryStarts
from services.runtime.dispatch import Dispatcher, ErrorLog, Handler
from services.runtime.metrics import NoMetrics
from services.runtime.ports import Clock, Metrics
from services.runtime.store import SqlBlobStore, Store


@dataclass
class Polled:
    """What polling every mailbox once did: the mails handed on, and why mailboxes were
    left alone (held by another poller), by name."""

    mail_ids: list[str] = field(default_factory=list)
    not_polled: dict[str, str] = field(default_factory=dict)


@dataclass
class Stage:
    """A runnable stage: consumers by queue name, plus optional timed work.

    ``tick`` runs between waits for messages, in ``mailroom worker`` and ``mailroom run``
    alike (the poller's schedule, the notifier's due retries); ``catch_up`` runs once at the
    end of ``run --once``, for timed work other than polling.
    """

    name: str
    handlers: dict[str, Handle | Batched]
    tick: Callable[[], object] | None = None
    on_start: Sequence[Callable[[], object]] = field(default_factory=list)
    #: Run when the process stops, after the last message: let background work end.
    on_stop: Sequence[Callable[[], object]] = field(default_factory=list)
    #: Run from the signal handler of a stop (SIGTERM, SIGINT): ask background work to end
    #: soon and cut connections to outside servers, without waiting for anything.
    stop_soon: Sequence[Callable[[], object]] = field(default_factory=list)
    #: The poller's "poll every mailbox now" (``run --once``); None for other stages.
    poll_all: Callable[[], Polled] | None = None
    #: The notifier's "send the retries that are due now"; None for other stages.
    catch_up: Callable[[], object] | None = None


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox.from_key_or_file(settings.secret_key, settings.effective_key_file)


def dispatcher(
    stage: str,
    handler: Handler,
    *,
    settings: Settings,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    publisher: Publisher | None = None,
) -> Dispatcher:
    """A dispatcher for ``stage`` publishing on a connection of its own (``publisher``'s,
    when given), counting what it handles in ``metrics``."""
    return Dispatcher(
        stage=stage,
        handler=handler,
        publish=(publisher or Publisher(connection)).publish,
        error_log=ErrorLog(SqlBlobStore(store), secret_box(settings)),
        max_attempts=settings.max_attempts,
        starts=SqlDeliveryStarts(store, clock or SystemClock()),
        metrics=metrics or NoMetrics(),
    )


def batched(
    stage: str,
    handler: Handler,
    *,
    settings: Settings,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Batched:
    """The stage's handling in batches of ``settings.batch_size``, each in one store
    transaction (``batches.BatchDispatcher``), one mail at a time where that is needed."""
    publisher = Publisher(connection)
    single = dispatcher(
        stage,
        handler,
        settings=settings,
        connection=connection,
        store=store,
        clock=clock,
        metrics=metrics,
        publisher=publisher,
    )
    handle = BatchDispatcher(
        single, batch=store.batch, step=store.transaction, publish_all=publisher.publish_all
    )
    return Batched(handle, settings.batch_size, settings.batch_linger_ms / 1000)
