"""Session-wide real servers. Each starts only when a test first asks for it."""

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailservers import Dovecot, Socks5Proxy, Tinyproxy
from servers import PostgreSQL, RabbitMQ, free_port, until_done
from smtp_servers import Collector, SmtpServer

from services.runtime.store import Store


@pytest.fixture(autouse=True, scope="session")
def no_data_in_the_home_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that names no data folder gets a throwaway one, never ``~/.local/state``: the
    default data folder is under ``XDG_STATE_HOME``, which points into the session's tmp."""
    state = tmp_path_factory.mktemp("xdg-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(state))
        patch.delenv("MAILROOM_VAR_DIR", raising=False)
        yield


@pytest.fixture(autouse=True)
def leaves_no_process_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that started processes in its folder (workers, servers) must stop them all:
    one left running fails the test, and is killed."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    folder = request.getfixturevalue("tmp_path")
    yield
    left = processes_in(folder)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"the test left processes running: {sorted(left.values())}"


def processes_in(folder: Path) -> dict[int, str]:
    """Command line by pid of every process working in ``folder`` or below it."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cwd == folder or folder in cwd.parents:
            found[int(proc.name)] = command.strip()
    return found


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """A RabbitMQ node on a free loopback port: use ``rabbitmq.url``."""
    yield from until_done(RabbitMQ.start(tmp_path_factory.mktemp("rabbitmq")))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    """A PostgreSQL server on a free loopback port: use ``postgres.new_database()``."""
    yield from until_done(PostgreSQL.start(tmp_path_factory.mktemp("postgres")))


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    server = SmtpServer(free_port())
    server.start()
    try:
        yield server.collector, server.port
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """Dovecot with IMAP, IMAPS, POP3 and POP3S on free loopback ports.

    Shared by the session: give each test users of its own (``dovecot.add_user``).
    """
    yield from until_done(Dovecot.start(tmp_path_factory.mktemp("dovecot")))


@pytest.fixture(scope="session")
def dovecot_nomove(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A second Dovecot whose IMAP does not announce MOVE."""
    folder = tmp_path_factory.mktemp("dovecot-nomove")
    yield from until_done(Dovecot.start(folder, without_move=True))


@pytest.fixture(scope="session")
def http_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    """A tinyproxy HTTP proxy allowing CONNECT to any port: use ``http_proxy.url``."""
    yield from until_done(Tinyproxy.start(tmp_path_factory.mktemp("tinyproxy")))


@pytest.fixture(scope="session")
def socks_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Socks5Proxy]:
    """A dante SOCKS5 proxy without authentication: use ``socks_proxy.url``."""
    yield from until_done(Socks5Proxy.start(tmp_path_factory.mktemp("dante")))


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
