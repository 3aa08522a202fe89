"""Session-wide real servers. Each starts only when a test first asks for it."""

from collections.abc import Iterator

import pytest
from servers import PostgreSQL, RabbitMQ


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """A RabbitMQ node on a free loopback port: use ``rabbitmq.url``."""
    server = RabbitMQ.start(tmp_path_factory.mktemp("rabbitmq"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    """A PostgreSQL server on a free loopback port: use ``postgres.new_database()``."""
    server = PostgreSQL.start(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()
