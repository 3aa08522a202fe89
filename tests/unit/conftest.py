"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.runtime.health import Health, HealthServer


@pytest.fixture
def served() -> Iterator[tuple[Health, int]]:
    """A health endpoint on a free loopback port, and the state it answers from."""
    health = Health()
    server = HealthServer(health, "127.0.0.1", 0).start()
    try:
        yield health, server.port
    finally:
        server.close()
