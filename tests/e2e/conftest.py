"""The same scenarios on the embedded default and on RabbitMQ + PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Mailroom


@pytest.fixture(params=["embedded", "rabbitmq+postgres"])
def mailroom(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mailroom]:
    if request.param == "embedded":
        room = Mailroom.on_sqlite(tmp_path)
    else:
        rabbitmq = request.getfixturevalue("rabbitmq")
        postgres = request.getfixturevalue("postgres")
        room = Mailroom(tmp_path, rabbitmq.new_vhost(), postgres.new_database())
    yield room
    room.stop_workers()


@pytest.fixture
def scaled(rabbitmq, postgres, tmp_path: Path) -> Iterator[Mailroom]:  # type: ignore[no-untyped-def]
    """RabbitMQ + PostgreSQL only: for tests that run each stage as its own process."""
    room = Mailroom(tmp_path, rabbitmq.new_vhost(), postgres.new_database())
    yield room
    room.stop_workers()
