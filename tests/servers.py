"""Real RabbitMQ and PostgreSQL servers on free loopback ports, for the test suite.

Each server keeps all of its state under one work folder and uses its own ports, so it
never touches (or depends on) a system instance. A missing binary is an error naming the
Debian package, never a reason to skip: `make test` installs them through
scripts/install-system-deps.sh.

Example::

    broker = RabbitMQ.start(tmp / "rabbitmq")
    try:
        use(broker.url)
    finally:
        broker.stop()
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg
from psycopg import sql

__all__ = ["PostgreSQL", "RabbitMQ", "find_binary", "free_port", "until_done"]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
INSTALL_HINT = "`make test` installs it (scripts/install-system-deps.sh)"

_taken_ports: set[int] = set()


T = TypeVar("T")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now, in 20000-32000.

    Ports in the ephemeral range (32768-60999) are avoided: the kernel may hand them to
    outgoing connections, and RabbitMQ aborts its boot when its listener cannot bind.
    A port is returned at most once per process, so two servers never race for it.
    """
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _taken_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken_ports.add(port)
        return port
    raise RuntimeError("no free TCP port on 127.0.0.1 in 20000-32000")


def find_binary(name: str, package: str, dirs: list[Path] | tuple[Path, ...] = ()) -> Path:
    """Return the first `name` found in `dirs`, then on PATH.

    Raises:
        RuntimeError: naming the Debian package to install when the binary is missing.
    """
    for directory in dirs:
        candidate = directory / name
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise RuntimeError(f"{name} not found: install the Debian package {package!r}; {INSTALL_HINT}")


def started(server: T, *steps: Callable[[], object]) -> T:
    """Run ``steps`` to bring ``server`` up; when one fails, stop what did start and re-raise
    the original error, so nothing is left running."""
    try:
        for step in steps:
            step()
    except BaseException:
        with contextlib.suppress(Exception):  # keep the original error in front
            server.stop()  # type: ignore[attr-defined]
        raise
    return server


class _Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Stoppable)


def until_done(server: S) -> Iterator[S]:
    """For a fixture: hand the server to the tests, then stop it."""
    try:
        yield server
    finally:
        server.stop()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return f"--- {path} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM `proc` and wait; then SIGKILL whatever is left of its process group.

    `proc` must lead its own process group (``start_new_session=True``).
    """
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class RabbitMQ:
    """A private RabbitMQ node (with its own epmd) listening on 127.0.0.1 only.

    Attributes:
        port: the AMQP port.
        url: ``amqp://guest:guest@127.0.0.1:PORT//`` (guest may log in from loopback).
        workdir: folder holding the node's data, logs, config and Erlang cookie.
        log_file: the node's main log.
    """

    # The Debian /usr/sbin wrappers switch to the `rabbitmq` user (losing HOME and our
    # folder's permissions); the scripts behind them run as whoever calls them.
    BIN_DIRS = (Path("/usr/lib/rabbitmq/bin"),)
    PACKAGE = "rabbitmq-server"

    def __init__(self, workdir: Path, port: int, epmd_port: int, dist_port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.epmd_port = epmd_port
        self.dist_port = dist_port
        self.nodename = f"mr{port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{port}//"
        self.log_file = workdir / "log" / f"{self.nodename}.log"
        self.console_log = workdir / "console.log"
        self._server_bin = find_binary("rabbitmq-server", self.PACKAGE, self.BIN_DIRS)
        self._ctl_bin = find_binary("rabbitmqctl", self.PACKAGE, self.BIN_DIRS)
        self._epmd_bin = find_binary("epmd", "erlang-base")
        self._epmd: subprocess.Popen | None = None
        self._node: subprocess.Popen | None = None

    @classmethod
    def start(cls, workdir: Path) -> RabbitMQ:
        """Start a node under `workdir` and return once it answers an AMQP handshake.

        Raises:
            RuntimeError: a binary is missing, or the node is not ready within 60 s (the
                message carries the tail of its logs). Nothing is left running then.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, free_port(), free_port(), free_port())
        return started(server, server._write_config, server._start_epmd, server._start_node)

    def env(self) -> dict[str, str]:
        """Environment for rabbitmq-server and rabbitmqctl addressing this node."""
        base = self.workdir
        return {
            **os.environ,
            # Erlang keeps its cookie in HOME; rabbitmqctl must see the same one.
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.nodename,
            # The default (AMQP port + 20000) would land in the ephemeral range.
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # Erlang distribution would otherwise listen on every interface.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            # An empty file of our own, so /etc/rabbitmq/rabbitmq-env.conf is not read.
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl ARGS`` against this node and return its stdout.

        Raises:
            subprocess.CalledProcessError: rabbitmqctl failed (stderr is in the exception).
        """
        done = subprocess.run(
            [str(self._ctl_bin), "-n", self.nodename, *args],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def new_vhost(self, name: str | None = None) -> str:
        """Create an empty virtual host (its own queues) and return its AMQP URL."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.rabbitmqctl("add_vhost", name)
        self.rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    # -- outages, for tests that the pipeline rides them out ---------------------------------

    def stop_node(self) -> None:
        """Stop the node gracefully, keeping its data (queues and messages) for a restart."""
        if self._node is not None:
            _terminate(self._node)
            self._node = None

    def kill_node(self) -> None:
        """``kill -9`` the node (the whole Erlang VM), keeping its data on disk."""
        if self._node is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._node.pid, signal.SIGKILL)
            self._node.wait()
            self._node = None

    def start_node(self) -> None:
        """Start the node again on the same ports and data; returns once it serves AMQP."""
        self._start_node()

    def wipe(self, vhosts: list[str]) -> None:
        """Stop the node, delete all it kept, and start it empty with ``vhosts`` made again:
        a broker that comes back without its queues."""
        self.stop_node()
        shutil.rmtree(self.workdir / "mnesia", ignore_errors=True)
        (self.workdir / "mnesia").mkdir()
        self.start_node()
        for name in vhosts:
            self.rabbitmqctl("add_vhost", name)
            self.rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    def stop(self) -> None:
        """Stop the node, then its epmd, and wait for both. Safe to call twice."""
        if self._node is not None:
            # The start script turns SIGTERM into a clean node shutdown.
            _terminate(self._node)
            self._node = None
        if self._epmd is not None:
            _terminate(self._epmd)
            self._epmd = None

    def _write_config(self) -> None:
        (self.workdir / "log").mkdir(exist_ok=True)
        (self.workdir / "mnesia").mkdir(exist_ok=True)
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nlog.console = false\nlog.file.level = info\n"
        )
        (self.workdir / "enabled_plugins").write_text("[].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")

    def _start_epmd(self) -> None:
        # Run epmd in the foreground as our child: its pid is known, so stop() removes it
        # and no stray epmd outlives the session.
        with open(self.workdir / "epmd.log", "ab") as log:
            self._epmd = subprocess.Popen(
                [str(self._epmd_bin), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # If the node came up first it would start a global epmd of its own.
        _wait_until(lambda: _port_open(self.epmd_port), 10.0, self._epmd, "epmd", [])

    def _start_node(self) -> None:
        with open(self.console_log, "ab") as log:
            self._node = subprocess.Popen(
                [str(self._server_bin)],
                env=self.env(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        logs = [self.log_file, self.console_log]
        _wait_until(lambda: _amqp_handshake(self.port), START_TIMEOUT, self._node, "RabbitMQ", logs)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _amqp_handshake(port: int) -> bool:
    """True when the broker answers an AMQP 0-9-1 protocol header with a method frame.

    The port alone opens before the broker can serve connections.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
    except OSError:
        return False
    return len(frame) == 7 and frame[0] == 1  # frame type 1: Connection.Start


def _wait_until(
    ready: Callable[[], bool], timeout: float, proc: subprocess.Popen, what: str, logs: list[Path]
) -> None:
    """Poll `ready()` until true; raise with the logs if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            problem = f"{what} stopped while starting (exit status {proc.returncode})"
            break
        if time.monotonic() > deadline:
            problem = f"{what} was not ready within {timeout:.0f} s"
            break
        time.sleep(0.2)
    else:
        return
    raise RuntimeError("\n".join([problem, *(_tail(path) for path in logs)]))


class PostgreSQL:
    """A private PostgreSQL cluster listening on 127.0.0.1 only, with trust authentication.

    Attributes:
        port: the TCP port.
        admin_url: SQLAlchemy URL of the ``postgres`` database as the ``postgres`` superuser.
        workdir: folder holding the server log (and the cluster itself when not root).
        log_file: the server log.
    """

    PACKAGE = "postgresql"
    USER = "postgres"

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.admin_url = self.url("postgres")
        self.log_file = workdir / "postgres.log"
        bin_dirs = _postgres_bin_dirs()
        self._initdb = find_binary("initdb", self.PACKAGE, bin_dirs)
        self._pg_ctl = find_binary("pg_ctl", self.PACKAGE, bin_dirs)
        self._as_root = os.geteuid() == 0
        self._cluster_root = self._make_cluster_root()
        self.data_dir = self._cluster_root / "data"
        self.socket_dir = self._cluster_root / "sock"

    @classmethod
    def start(cls, workdir: Path) -> PostgreSQL:
        """Create a cluster and start it; return once it accepts connections.

        Raises:
            RuntimeError: a binary is missing, or initdb or the server failed (with the
                tail of the server log). Nothing is left running then.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, free_port())
        return started(server, server._initdb_cluster, server._start)

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database `dbname` on this server."""
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq URL of database `dbname`, for ``psycopg.connect``."""
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, name: str | None = None) -> str:
        """Create an empty database (a unique random name when `name` is None).

        Returns its SQLAlchemy URL. Raises psycopg.errors.DuplicateDatabase if it exists.
        """
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    # -- outages, for tests that the pipeline rides them out ---------------------------------

    def stop_server(self) -> None:
        """``pg_ctl stop -m fast``, keeping the data: clients are cut off at once."""
        self._run(self._pg_ctl, "-D", self.data_dir, "-m", "fast", "-w", "stop")

    def kill_server(self) -> None:
        """``kill -9`` the postmaster; its backends notice and end, the data stays."""
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_server(self) -> None:
        """Start the server again on the same port and data, recovering after a kill.

        Backends of a killed postmaster may hold its shared memory for a moment, which
        makes a start fail; it is tried again until they are gone.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self._start()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def drop_connections(self, dbname: str) -> int:
        """End every client connection to ``dbname``, as a failover does; returns how many."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        return len(rows)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait. Safe to call twice."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run(self._pg_ctl, "-D", self.data_dir, "-m", "fast", "-w", "stop")
        if self._as_root and self._cluster_root.exists():
            shutil.rmtree(self._cluster_root, ignore_errors=True)

    def _make_cluster_root(self) -> Path:
        if not self._as_root:
            return self.workdir
        # initdb and postgres refuse to run as root, and the `postgres` user cannot enter
        # pytest's private (0700) temp folders: keep the cluster in a folder it owns.
        root = Path(tempfile.mkdtemp(prefix="mailroom-pg-"))
        (root / "sock").mkdir()
        for path in (root, root / "sock"):
            shutil.chown(path, self.USER, self.USER)
        return root

    def _initdb_cluster(self) -> None:
        # C locale: the host's locale may not be generated. No sync: the cluster is throwaway.
        options = ("-A", "trust", "-U", self.USER, "--no-locale", "-E", "UTF8", "--no-sync")
        self._run(self._initdb, "-D", self.data_dir, *options)

    def _start(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c max_connections=200"
        )
        # No -l: the server inherits our log file's descriptor, so the log can stay in
        # `workdir` even when the `postgres` user may not open files there.
        self._run(self._pg_ctl, "-D", self.data_dir, "-o", options, "-w", "start")

    def _run(self, program: Path, *args: object) -> None:
        command = [str(program), *map(str, args)]
        if self._as_root:
            command = ["runuser", "-u", self.USER, "--", *command]
        with open(self.log_file, "ab") as log:
            done = subprocess.run(
                command,
                cwd=self._cluster_root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed with status {done.returncode}\n" + _tail(self.log_file)
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _postgres_bin_dirs() -> list[Path]:
    """Debian's /usr/lib/postgresql/VERSION/bin folders, highest version first."""

    def version(path: Path) -> tuple[int, ...]:
        parts = path.parent.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)

    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
