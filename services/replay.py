"""Where replayed and moved-back mail is published: the broker the workers listen on, or,
on the embedded broker, this process (no pipeline runs in a command's process)."""

from __future__ import annotations

from collections.abc import Callable

from contracts.base import Envelope
from contracts.mail import MailFetched
from contracts.settings import Settings
from services.admin import Publish
from services.pipeline import Pipeline
from services.runtime.bus import Publisher, connect, is_embedded
from services.runtime.clock import SystemClock
from services.runtime.store import Store


def replay_publisher(
    settings: Settings, open_store: Callable[[Settings], Store]
) -> tuple[Publish, Callable[[], None]]:
    """A publish function and what to call once done with it.

    On the embedded broker the next run's recovery publishes the mails the replay made
    unfinished; other messages (notifications) are handled here when done."""
    if is_embedded(settings.broker_url):
        held: list[Envelope] = []

        def hold(msg: Envelope) -> None:
            if not isinstance(msg, MailFetched):  # mails: the next run's recovery has them
                held.append(msg)

        return hold, lambda: _deliver_in_process(settings, open_store(settings), held)
    connection = connect(settings.broker_url)
    publisher = Publisher(connection)

    def close() -> None:
        publisher.close()
        connection.release()

    return publisher.publish, close


def _deliver_in_process(settings: Settings, store: Store, messages: list[Envelope]) -> None:
    """The embedded broker lives in one process: handle these messages here and now."""
    if not messages:
        return
    connection = connect(settings.broker_url)
    pipeline = Pipeline(settings, connection=connection, store=store, clock=SystemClock())
    publisher = Publisher(connection)
    try:
        for msg in messages:
            publisher.publish(msg)
        pipeline.settle()
    finally:
        publisher.close()
        connection.release()
