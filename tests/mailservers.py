"""Real Dovecot (IMAP, IMAPS, POP3, POP3S) and real HTTP CONNECT and SOCKS5 proxies.

Like tests/servers.py, each server runs from a Debian package on free loopback ports with
a configuration of its own, keeps its files under one work folder (Dovecot, as root, also
one folder in /tmp: see `Dovecot`) and leaves nothing running after ``stop()``. A missing
binary is an error naming the package: `make test` installs them through
scripts/install-system-deps.sh.

Example::

    dovecot = Dovecot.start(tmp / "dovecot")
    try:
        dovecot.add_user("help@example.test", "secret")
        dovecot.deliver("help@example.test", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        assert dovecot.imap_uids("help@example.test") == [1]
    finally:
        dovecot.stop()
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs

from servers import _tail, _terminate, _wait_until, find_binary, free_port, started

__all__ = ["Dovecot", "Socks5Proxy", "Tinyproxy"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = 30.0
HOST = "127.0.0.1"
# CAPABILITY after login of Dovecot 2.3 less MOVE (Dovecot cannot drop one capability, only
# replace the whole list). Clients fall back to COPY + STORE \Deleted + EXPUNGE without it.
CAPABILITY_WITHOUT_MOVE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES"
    " THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN"
    " NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES"
    " WITHIN CONTEXT=SEARCH LIST-STATUS BINARY SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW"
    " STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)
# Bare CR or LF become CRLF, as imaplib's append() does, so both delivery paths agree.
_LINE_ENDS = re.compile(rb"\r\n|\r(?!\n)|\n")
# deliver_many() sends one MULTIAPPEND per batch: bounded memory, few round trips.
_BATCH_BYTES = 8 * 1024 * 1024
_BATCH_MAILS = 1000


class Dovecot:
    """A private Dovecot on 127.0.0.1 with IMAP, IMAPS, POP3 and POP3S listeners.

    Users log in with PLAIN/LOGIN (also over plain IMAP and POP3, and STARTTLS is offered
    there) or XOAUTH2/OAUTHBEARER with a token checked by an in-process introspection
    server. The certificate is signed by a CA made at start; its SAN is ``DNS:localhost``
    only, so verifying it against host ``127.0.0.1`` fails with a host-name mismatch.
    Failed logins are not delayed, so wrong-password tests are instant.

    As root, mail belongs to ``nobody``, and the users' homes, passwd-files and Dovecot's
    sockets live in a /tmp folder of their own that stop() removes: pytest's temp folders
    are closed to the ``dovecot`` and ``nobody`` users. `home()` gives a user's folder.

    Attributes:
        host: ``127.0.0.1``.
        imap_port, imaps_port, pop3_port, pop3s_port: the four listeners.
        ca_file: PEM of the CA that signed the server certificate (trust it, connect to
            ``localhost``).
        cert_file: PEM of the server certificate.
        without_move: True when MOVE is left out of the IMAP capabilities.
        workdir: folder holding the configuration, certificates and log.
        log_file: Dovecot's log (auth failures included).
    """

    PACKAGE = "dovecot-imapd"
    LIBEXEC = (Path("/usr/lib/dovecot"),)

    def __init__(self, workdir: Path, *, without_move: bool) -> None:
        self.host = HOST
        self.workdir = workdir
        self.without_move = without_move
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        self.log_file = workdir / "dovecot.log"
        self.ca_file = workdir / "tls" / "ca.pem"
        self.cert_file = workdir / "tls" / "server.pem"
        self._dovecot = find_binary("dovecot", self.PACKAGE)
        find_binary("imap", self.PACKAGE, self.LIBEXEC)
        find_binary("pop3", "dovecot-pop3d", self.LIBEXEC)
        self._openssl = find_binary("openssl", "openssl")
        self._as_root = os.geteuid() == 0
        # Mail processes run as a user of their own, as on a real server: Dovecot would
        # need first_valid_uid = 0 to run them as root.
        nobody = pwd.getpwnam("nobody")
        self._mail_uid, self._mail_gid = (
            (nobody.pw_uid, nobody.pw_gid) if self._as_root else (os.getuid(), os.getgid())
        )
        self._root = self._make_root()
        self._users = self._root / "users"
        self._passwords: dict[str, str] = {}
        self._lock = threading.Lock()
        self._introspection = _IntrospectionServer()
        self._proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, workdir: Path, *, without_move: bool = False) -> Dovecot:
        """Start Dovecot under `workdir` and return once IMAP and POP3 answer.

        With `without_move`, IMAP does not announce MOVE (for the COPY+EXPUNGE fallback).

        Raises:
            RuntimeError: a binary is missing or Dovecot did not start (with the tail of
                its log). Nothing is left running then.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, without_move=without_move)
        return started(
            server,
            server._make_certificates,
            server._introspection.start,
            server._write_config,
            server._start,
        )

    @property
    def introspection_requests(self) -> int:
        """How many token introspection requests Dovecot has made so far."""
        return self._introspection.requests

    @property
    def pid(self) -> int | None:
        """Process id of the Dovecot master, which leads its process group; None once stopped."""
        return self._proc.pid if self._proc is not None else None

    def add_user(self, name: str, password: str) -> None:
        """Create a user, usable at once. Changing a password takes up to two seconds.

        Dovecot lower-cases user names at login, as most servers do.
        """
        if not name or name.startswith(".") or any(c in name for c in "/:\r\n\0"):
            raise ValueError(f"not usable as a Dovecot user name here: {name!r}")
        if not password or any(c in password for c in ":\r\n\0"):
            raise ValueError(f"not usable in a passwd-file: {password!r}")
        path = self._users / name.lower()
        with self._lock:
            known = path.exists()
            if known:
                # Dovecot re-reads a passwd-file at most once a second, and only when its
                # mtime (in seconds) or size changed: make sure a rewrite is noticed.
                _wait_for_next_second(path.stat().st_mtime)
            # One file per user: a new user is a new file, read on first use. A shared file
            # written within the second of the previous login would go unnoticed.
            staging = path.with_name(f".{path.name}.new")
            staging.write_text(f"{name.lower()}:{{PLAIN}}{password}::::::\n")
            staging.chmod(0o644)  # read by the auth process, which does not run as root
            staging.replace(path)  # never seen half-written
            self._passwords[name.lower()] = password
            if known:
                _wait_for_next_second(path.stat().st_mtime)

    def add_token(self, token: str, username: str) -> None:
        """Accept `token` for XOAUTH2/OAUTHBEARER logins of `username` (added with add_user)."""
        self._introspection.tokens[token] = username

    def home(self, user: str) -> Path:
        """The user's home folder; mail is in its ``Maildir``."""
        return self._root / "home" / user.lower()

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A plain-IMAP session logged in as `user`, logged out afterwards."""
        try:
            password = self._passwords[user.lower()]
        except KeyError:
            raise KeyError(f"{user!r} is not a user of this Dovecot: add_user() first") from None
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=CLIENT_TIMEOUT)
        try:
            client.login(user, password)
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def deliver(
        self, user: str, raw: bytes, *, seen: bool = False, folder: str | None = None
    ) -> None:
        """Append one mail to `folder` (INBOX when None), creating the folder if missing.

        Going through IMAP, not the Maildir, lets Dovecot assign UIDs as it would for mail
        that arrives while a client is polling.
        """
        self.deliver_many(user, [raw], seen=seen, folder=folder)

    def deliver_many(
        self, user: str, raws: list[bytes], *, seen: bool = False, folder: str | None = None
    ) -> None:
        """Append many mails in one session, in order (UIDs ascend with list order).

        One MULTIAPPEND with non-synchronising literals (LITERAL+) per batch, so thousands
        of mails take seconds instead of a round trip each.
        """
        mailbox = _quote(folder or "INBOX")
        flags = b" (\\Seen)" if seen else b""
        with self.imap(user) as client:
            if folder is not None:
                client.create(mailbox)  # NO [ALREADYEXISTS] is fine
            batch: list[bytes] = []
            size = 0
            for number, raw in enumerate(raws, 1):
                literal = _LINE_ENDS.sub(b"\r\n", raw)
                batch.append(flags + b" {%d+}\r\n" % len(literal) + literal)
                size += len(literal)
                if size >= _BATCH_BYTES or len(batch) >= _BATCH_MAILS or number == len(raws):
                    _multiappend(client, mailbox, batch)
                    batch, size = [], 0

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """The folder's current UIDVALIDITY."""
        with self.imap(user) as client:
            typ, data = client.status(_quote(folder), "(UIDVALIDITY)")
        _check(typ, data, "STATUS")
        match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
        if match is None:
            raise RuntimeError(f"no UIDVALIDITY in {data!r}")
        return int(match.group(1))

    def uidvalidity_change(self, user: str) -> int:
        """Give the user's INBOX a new UIDVALIDITY (mails keep their content and flags).

        Dovecot then numbers every mail afresh, as after a server migration. Call it while
        no client has the INBOX open. Returns the new UIDVALIDITY.
        """
        before = self.uidvalidity(user)
        maildir = self.home(user) / "Maildir"
        # The UID list and the indexes are where Dovecot remembers UIDs and UIDVALIDITY;
        # without them it rescans the Maildir. dovecot-uidvalidity stays, so the new value
        # is greater than the old one even within the same second.
        for path in [maildir / "dovecot-uidlist", *maildir.glob("dovecot.index*")]:
            path.unlink(missing_ok=True)
        after = self.uidvalidity(user)
        if after == before:
            raise RuntimeError(f"UIDVALIDITY of {user}'s INBOX stayed {before}")
        return after

    def imap_sessions(self, user: str) -> list[tuple[datetime, datetime | None]]:
        """When each IMAP session of ``user`` logged in and ended, from Dovecot's log, in
        order of login; the end is None while the session goes on."""
        text = self.log_file.read_text(errors="replace")
        quoted = re.escape(user.lower())
        logins = re.finditer(
            rf"^(\S+ \S+) imap-login: Info: Login: user=<{quoted}>, .*session=<([^>]+)>", text, re.M
        )
        ends = re.finditer(
            rf"^(\S+ \S+) imap\({quoted}\)<\d+><([^>]+)>: Info: Disconnected", text, re.M
        )
        ended = {m[2]: _logged_at(m[1]) for m in ends}
        return [(_logged_at(m[1]), ended.get(m[2])) for m in logins]

    def imap_uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """UIDs of all mails in `folder`, ascending."""
        with self.imap(user) as client:
            _check(*client.select(_quote(folder), readonly=True), "EXAMINE")
            typ, data = client.uid("SEARCH", "ALL")
        _check(typ, data, "UID SEARCH")
        return sorted(int(uid) for uid in (data[0] or b"").split())

    def imap_flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """Flags of every mail in `folder` by UID, e.g. ``{1: {"\\\\Seen"}, 2: set()}``.

        ``\\Recent`` is left out: it depends on which session saw the mail first.
        """
        with self.imap(user) as client:
            typ, data = client.select(_quote(folder), readonly=True)
            _check(typ, data, "EXAMINE")
            if data[0] == b"0":
                return {}
            typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
        _check(typ, data, "UID FETCH")
        flags = {}
        for line in data:
            match = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)", line)
            if match is None:
                raise RuntimeError(f"unexpected FETCH response {line!r}")
            uid = match.group(1) or match.group(4)
            names = match.group(2) if match.group(1) else match.group(3)
            flags[int(uid)] = set(names.decode().split()) - {"\\Recent"}
        return flags

    def folder_count(self, user: str, folder: str) -> int:
        """Number of mails in `folder`; 0 when it does not exist."""
        with self.imap(user) as client:
            typ, data = client.status(_quote(folder), "(MESSAGES)")
        if typ != "OK":
            return 0
        match = re.search(rb"MESSAGES (\d+)", data[0] or b"")
        if match is None:
            raise RuntimeError(f"no MESSAGES in {data!r}")
        return int(match.group(1))

    def halt(self) -> None:
        """``kill -STOP`` every Dovecot process: the server stops answering, as a hung host."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """``kill -CONT``: the halted server answers again."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop Dovecot and its processes, then the introspection server. Safe to call twice."""
        if self._proc is not None:
            self.resume()  # a halted server could not act on SIGTERM
            # The master stops its children on SIGTERM; whatever is left of its process
            # group is killed, so no login or imap process outlives it.
            _stop(self._proc)
            self._proc = None
        self._introspection.stop()
        if self._root != self.workdir:
            shutil.rmtree(self._root, ignore_errors=True)

    def _make_root(self) -> Path:
        if not self._as_root:
            return self.workdir
        # As root, Dovecot's auth process (user dovecot) and mail processes (user nobody)
        # must reach the passwd-file, sockets and homes, which pytest's private (0700)
        # temp folders forbid: keep those in a folder of their own, removed by stop().
        # The short path also keeps socket paths under the 108-byte limit.
        root = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
        root.chmod(0o755)
        (root / "home").mkdir()
        os.chown(root / "home", self._mail_uid, self._mail_gid)
        return root

    def _make_certificates(self) -> None:
        tls = self.ca_file.parent
        tls.mkdir(exist_ok=True)
        # An explicit config, so the system's openssl.cnf adds no extensions; these are
        # the ones strict verifiers (Python 3.13's VERIFY_X509_STRICT) insist on.
        (tls / "openssl.cnf").write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
            "[ca]\nbasicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
            "[server]\nbasicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:localhost\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        )
        # EC keys: generated in milliseconds, where RSA takes most of a second.
        key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        self._openssl_run(
            tls, "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *key,
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            "-subj", "/CN=Mailroom test CA",
        )  # fmt: skip
        self._openssl_run(
            tls, "req", "-new", "-config", "openssl.cnf", *key,
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        )  # fmt: skip
        self._openssl_run(
            tls, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
            "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.pem",
        )  # fmt: skip

    def _openssl_run(self, cwd: Path, *args: str) -> None:
        done = subprocess.run(
            [str(self._openssl), *args], cwd=cwd, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")

    def _write_config(self) -> None:
        root = self._root
        for sub in ("base", "state"):
            (root / sub).mkdir(exist_ok=True)
        self._users.mkdir(exist_ok=True)
        self._users.chmod(0o755)
        oauth2 = root / "oauth2.conf.ext"
        oauth2.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self._introspection.url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        oauth2.chmod(0o644)
        uid, gid = self._mail_uid, self._mail_gid
        if self._as_root:
            users = ""  # the package's dovecot and dovenull users
        else:
            # Unprivileged, every Dovecot process runs as this user, without chroot.
            me, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
            users = (
                f"default_internal_user = {me}\ndefault_login_user = {me}\n"
                f"default_internal_group = {group}\n"
            )
        capability = (
            f"protocol imap {{\n  imap_capability = {CAPABILITY_WITHOUT_MOVE}\n}}\n"
            if self.without_move
            else ""
        )
        no_chroot = "" if self._as_root else "  chroot =\n"
        config = f"""\
# Generated by tests/mailservers.py for one test session.
instance_name = mailroom-{self.imap_port}
base_dir = {root}/base
state_dir = {root}/state
log_path = {self.log_file}
# Microseconds: tests read from the log when each session began and ended.
log_timestamp = "%Y-%m-%d %H:%M:%S.%{{usecs}} "
{users}listen = {self.host}
protocols = imap pop3
ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{self.cert_file.with_suffix(".key")}
# Tests log in over plain IMAP and POP3 on loopback; STARTTLS is still offered.
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_verbose = yes
# No delay after a failed login, and no growing penalty for 127.0.0.1 either.
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = {min(uid, 500)}
first_valid_gid = {min(gid, 1)}
# Throwaway mail: no fsync, which makes bulk delivery much faster.
mail_fsync = never
mail_max_userip_connections = 100
pop3_uidl_format = %08Xu%08Xv
# Auth holds every failed login for its next 0.5 s tick even with no delay, unless the
# request carries "nodelay". A failing passdb's fields are dropped, so a first passdb that
# always succeeds sets it, then hands over in the failed state: passwords are still checked.
passdb {{
  driver = static
  args = nopassword=y nodelay=y
  result_success = continue-fail
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN {self._users}/%u
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
userdb {{
  driver = passwd-file
  args = {self._users}/%u
  override_fields = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
{no_chroot}  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
{no_chroot}  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
service anvil {{
{no_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{capability}"""
        (self.workdir / "dovecot.conf").write_text(config)

    def _start(self) -> None:
        with open(self.workdir / "dovecot.out", "ab") as out:
            # -F: the master stays our child, so its pid is known and stop() ends it.
            self._proc = subprocess.Popen(
                [str(self._dovecot), "-F", "-c", str(self.workdir / "dovecot.conf")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        logs = [self.log_file, self.workdir / "dovecot.out"]

        def ready() -> bool:
            return _greets(self.imap_port, b"* OK") and _greets(self.pop3_port, b"+OK")

        _wait_until(ready, START_TIMEOUT, self._proc, "Dovecot", logs)


class _IntrospectionServer:
    """OAuth2 token introspection (RFC 7662) for Dovecot's oauth2 passdb, in a thread."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.requests = 0
        self._count_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server hook)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                token = (form.get("token") or [""])[0]
                with owner._count_lock:  # one thread per request
                    owner.requests += 1
                user = owner.tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest's output clean

        self._server = ThreadingHTTPServer((HOST, free_port()), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_port}/introspect"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth2-introspection", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class _Proxy:
    """A proxy server from a Debian package, on 127.0.0.1 and a free port.

    Attributes:
        host, port: where it listens.
        url: ``SCHEME://127.0.0.1:PORT``.
        workdir: folder holding its configuration and log.
        log_file: its log.
    """

    SCHEME = ""
    BINARY = ""
    PACKAGE = ""

    def __init__(self, workdir: Path) -> None:
        self.host = HOST
        self.port = free_port()
        self.url = f"{self.SCHEME}://{HOST}:{self.port}"
        self.workdir = workdir
        self.log_file = workdir / f"{self.BINARY}.log"
        self._binary = find_binary(self.BINARY, self.PACKAGE)
        self._proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, workdir: Path) -> Self:
        """Start the proxy under `workdir`; return once it accepts connections.

        Raises:
            RuntimeError: the binary is missing or did not start. Nothing is left running.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        proxy = cls(workdir)
        try:
            proxy._proc = _spawn(proxy._command(), proxy.log_file, proxy.port)
        except BaseException:
            proxy.stop()
            raise
        return proxy

    def _command(self) -> list[str]:
        """Write the configuration; return the command line that runs in the foreground."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """Process id of the proxy, which leads its process group; None once stopped."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Stop the proxy and its helper processes, and wait. Safe to call twice."""
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None


class Tinyproxy(_Proxy):
    """tinyproxy: an HTTP proxy that allows CONNECT to any port."""

    SCHEME, BINARY, PACKAGE = "http", "tinyproxy", "tinyproxy"

    def _command(self) -> list[str]:
        config = self.workdir / "tinyproxy.conf"
        # No ConnectPort line: CONNECT may reach every port (the Dovecot ones are random).
        # It logs to stderr, our log file, which stays writable after it drops root.
        user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
        config.write_text(
            f"Port {self.port}\nListen {HOST}\nAllow 127.0.0.1\nTimeout 600\n"
            f"MaxClients 100\nDisableViaHeader Yes\nLogLevel Info\n{user}"
        )
        return [str(self._binary), "-d", "-c", str(config)]


class Socks5Proxy(_Proxy):
    """dante: a SOCKS5 server without authentication, to 127.0.0.0/8 only."""

    SCHEME, BINARY, PACKAGE = "socks5", "danted", "dante-server"

    def _command(self) -> list[str]:
        config = self.workdir / "danted.conf"
        me = pwd.getpwuid(os.getuid()).pw_name
        # As root, dante does its unprivileged work as nobody; otherwise all as this user.
        unprivileged = "nobody" if os.geteuid() == 0 else me
        config.write_text(
            f"""\
logoutput: stderr
internal: {HOST} port = {self.port}
external: {HOST}
clientmethod: none
socksmethod: none
user.privileged: {me}
user.unprivileged: {unprivileged}
client pass {{
  from: 127.0.0.0/8 to: 127.0.0.0/8
  log: error
}}
socks pass {{
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
  log: error
}}
"""
        )
        pid_file = self.workdir / "danted.pid"
        return [str(self._binary), "-f", str(config), "-N", "1", "-p", str(pid_file)]


def _spawn(command: list[str], log_file: Path, port: int) -> subprocess.Popen:
    """Run `command` in the foreground as a process-group leader; wait for `port`."""
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_until(lambda: _greets(port, b""), START_TIMEOUT, proc, Path(command[0]).name, [])
    except RuntimeError as exc:
        _stop(proc)
        raise RuntimeError(f"{exc}\n{_tail(log_file)}") from None
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """Terminate `proc`, kill the rest of its process group, and wait until all are gone.

    Killed processes take a moment to die, holding listening sockets until they do.
    Exited ones are not waited for: orphans are re-parented to PID 1, and the PID 1 of
    some containers never reaps them.
    """
    _terminate(proc)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _live_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _live_processes(pgid: int) -> list[int]:
    """Processes of process group `pgid` that have not exited (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # exited while we looked
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def _wait_for_next_second(mtime: float) -> None:
    """Sleep until the wall clock is past the whole second of `mtime`."""
    time.sleep(max(0.0, int(mtime) + 1 - time.time()) + 0.01)


def _logged_at(stamp: str) -> datetime:
    """A time stamp of Dovecot's log (``log_timestamp`` above)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")


def _greets(port: int, greeting: bytes) -> bool:
    """True when 127.0.0.1:`port` accepts a connection and its first bytes are `greeting`."""
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            if not greeting:
                return True
            received = b""
            deadline = time.monotonic() + 2.0
            while len(received) < len(greeting) and time.monotonic() < deadline:
                chunk = sock.recv(256)
                if not chunk:
                    break
                received += chunk
            return received.startswith(greeting)
    except OSError:
        return False


def _quote(mailbox: str) -> str:
    """An IMAP quoted string: imaplib passes mailbox names through as they are."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(typ: str, data: list, command: str) -> None:
    if typ != "OK":
        raise RuntimeError(f"IMAP {command} failed: {typ} {data!r}")


def _multiappend(client: imaplib.IMAP4, mailbox: str, literals: list[bytes]) -> None:
    """Send one APPEND carrying all `literals` (flags + {n+} + mail) and check its result.

    imaplib has no MULTIAPPEND; its public send() and readline() carry the raw command.
    The tag cannot clash with imaplib's own, which are four letters and a number.
    """
    tag = b"MR%d" % time.monotonic_ns()
    client.send(b"%s APPEND %s%s\r\n" % (tag, mailbox.encode(), b"".join(literals)))
    while True:
        line = client.readline()
        if not line:
            raise RuntimeError("Dovecot closed the connection during APPEND")
        if line.startswith(tag + b" "):
            break
    if not line.startswith(tag + b" OK"):
        raise RuntimeError(f"IMAP APPEND of {len(literals)} mails failed: {line!r}")
