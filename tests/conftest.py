"""Session-wide real servers. Each starts only when a test first asks for it."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from mailservers import Dovecot, Socks5Proxy, Tinyproxy
from servers import PostgreSQL, RabbitMQ, free_port
from smtp_servers import Collector

from services.runtime.store import Store


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


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """Dovecot with IMAP, IMAPS, POP3 and POP3S on free loopback ports.

    Shared by the session: give each test users of its own (``dovecot.add_user``).
    """
    server = Dovecot.start(tmp_path_factory.mktemp("dovecot"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_nomove(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A second Dovecot whose IMAP does not announce MOVE."""
    server = Dovecot.start(tmp_path_factory.mktemp("dovecot-nomove"), without_move=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    """A tinyproxy HTTP proxy allowing CONNECT to any port: use ``http_proxy.url``."""
    proxy = Tinyproxy.start(tmp_path_factory.mktemp("tinyproxy"))
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def socks_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Socks5Proxy]:
    """A dante SOCKS5 proxy without authentication: use ``socks_proxy.url``."""
    proxy = Socks5Proxy.start(tmp_path_factory.mktemp("dante"))
    yield proxy
    proxy.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A migrated store, once on SQLite and once on the session's PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    migrated = Store(url)
    migrated.migrate()
    return migrated
