"""The mail-server fixtures give a real Dovecot and real proxies with what the pollers need.

Only the standard library speaks to them here, so these tests check the servers, not our
adapters.
"""

import imaplib
import ipaddress
import os
import poplib
import pwd
import socket
import ssl
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from mailservers import Dovecot, Socks5Proxy, Tinyproxy

pytestmark = pytest.mark.infra

TIMEOUT = 10.0
# Dovecot's defaults delay a failed login by 2 s and the next logins from the same address
# by 2-15 s; a client timeout below that shows the fixture turned both off.
NO_PENALTY_TIMEOUT = 1.5
# OpenSSL's verify codes for a certificate whose issuer the client does not trust.
UNTRUSTED_ISSUER = {
    18,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
}
HOSTNAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH

Connector = Callable[[str, int], socket.socket]


def new_user(dovecot: Dovecot) -> tuple[str, str]:
    """A user of its own per test: the Dovecot fixture is shared by the whole session."""
    name = f"u{uuid.uuid4().hex[:10]}@example.test"
    password = uuid.uuid4().hex
    dovecot.add_user(name, password)
    return name, password


def mail(subject: str, size: int = 0) -> bytes:
    """A small mail, with a body of about `size` bytes in lines of 78."""
    return (
        f"From: customer@example.test\r\nTo: help@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n\r\n".encode()
        + (b"x" * 76 + b"\r\n") * (size // 78)
        + b"body\r\n"
    )


def trusting_ca(dovecot: Dovecot) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(dovecot.ca_file))


def subjects(client: imaplib.IMAP4, uids: str) -> list[bytes]:
    typ, data = client.uid("FETCH", uids, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    return [part[1].strip() for part in data if isinstance(part, tuple)]


# --- IMAP and IMAPS -------------------------------------------------------------------------


def test_delivered_mail_is_found_by_uid_search_over_imap(dovecot):
    # Given one unseen and one seen mail in the INBOX, and one in another folder
    user, password = new_user(dovecot)
    dovecot.deliver(user, mail("first"))
    dovecot.deliver(user, mail("second"), seen=True)
    dovecot.deliver(user, mail("filed"), folder="Processed")

    # When a client logs in over plain IMAP and searches
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT) as client:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        _, all_uids = client.uid("SEARCH", "ALL")
        _, unseen = client.uid("SEARCH", "UNSEEN")

    # Then Dovecot numbered the mails in delivery order and kept the \Seen flag
    assert all_uids == [b"1 2"]
    assert unseen == [b"1"]
    assert dovecot.imap_uids(user) == [1, 2]
    assert dovecot.imap_flags(user) == {1: set(), 2: {"\\Seen"}}
    assert dovecot.folder_count(user, "Processed") == 1
    assert dovecot.folder_count(user, "No such folder") == 0


def test_mail_is_owned_by_an_unprivileged_user(dovecot):
    user, _ = new_user(dovecot)
    dovecot.deliver(user, mail("owned"))

    files = [path for path in (dovecot.home(user) / "Maildir").rglob("*") if path.is_file()]

    # As root the mail goes to `nobody`; run unprivileged, it stays with the test's user.
    owner = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert files
    assert {path.stat().st_uid for path in files} == {owner}


def test_a_changed_password_applies_to_the_next_login(dovecot):
    user, old = new_user(dovecot)
    with dovecot.imap(user):
        pass  # Dovecot has now read the user's passwd-file

    dovecot.add_user(user, "changed")

    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT) as client:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(user, old)
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT) as client:
        assert client.login(user, "changed")[0] == "OK"


def test_deliver_many_appends_thousands_of_mails_in_order(dovecot):
    # Given two thousand 10 KB mails
    user, password = new_user(dovecot)
    raws = [mail(f"bulk {n}", size=10_000) for n in range(2000)]

    # When they are delivered at once
    dovecot.deliver_many(user, raws)

    # Then every one arrived, with UIDs following the list order
    assert dovecot.imap_uids(user) == list(range(1, 2001))
    with dovecot.imap(user) as client:
        client.select("INBOX", readonly=True)
        assert subjects(client, "1,2000") == [b"Subject: bulk 0", b"Subject: bulk 1999"]


def test_imaps_verifies_against_the_test_ca_for_localhost(dovecot):
    user, password = new_user(dovecot)

    with imaplib.IMAP4_SSL(
        "localhost", dovecot.imaps_port, ssl_context=trusting_ca(dovecot), timeout=TIMEOUT
    ) as client:
        typ, _ = client.login(user, password)
        peer = client.sock.getpeercert()

    assert typ == "OK"
    assert ("DNS", "localhost") in peer["subjectAltName"]


def test_imaps_to_the_ip_address_is_a_host_name_mismatch(dovecot):
    # The certificate names only localhost, as a server reached under the wrong name.
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        imaplib.IMAP4_SSL(
            "127.0.0.1", dovecot.imaps_port, ssl_context=trusting_ca(dovecot), timeout=TIMEOUT
        )

    assert caught.value.verify_code in HOSTNAME_MISMATCH
    assert "mismatch" in caught.value.verify_message


def test_imaps_without_the_test_ca_is_an_untrusted_issuer(dovecot):
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        imaplib.IMAP4_SSL(
            "localhost",
            dovecot.imaps_port,
            ssl_context=ssl.create_default_context(),
            timeout=TIMEOUT,
        )

    assert caught.value.verify_code in UNTRUSTED_ISSUER


def test_starttls_is_offered_on_plain_imap(dovecot):
    user, password = new_user(dovecot)

    with imaplib.IMAP4("localhost", dovecot.imap_port, timeout=TIMEOUT) as client:
        assert "STARTTLS" in client.capabilities
        client.starttls(trusting_ca(dovecot))
        typ, _ = client.login(user, password)

    assert typ == "OK"


def test_a_wrong_password_or_user_is_refused_without_delay(dovecot):
    user, password = new_user(dovecot)

    # Several failures in a row would trip Dovecot's auth penalty for 127.0.0.1.
    for name, wrong in [(user, "wrong"), (user, ""), ("nobody@example.test", password)]:
        with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=NO_PENALTY_TIMEOUT) as client:
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                client.login(name, wrong)

    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=NO_PENALTY_TIMEOUT) as client:
        typ, _ = client.login(user, password)
    assert typ == "OK"


# --- XOAUTH2 and OAUTHBEARER ----------------------------------------------------------------


def xoauth2(user: str, token: str) -> Callable[[bytes], bytes]:
    return lambda _challenge: f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def test_xoauth2_logs_in_with_a_registered_token(dovecot):
    user, _ = new_user(dovecot)
    token = uuid.uuid4().hex
    dovecot.add_token(token, user)
    before = dovecot.introspection_requests

    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT) as client:
        typ, _ = client.authenticate("XOAUTH2", xoauth2(user, token))

    assert typ == "OK"
    assert dovecot.introspection_requests == before + 1


def test_oauthbearer_logs_in_over_imaps(dovecot):
    user, _ = new_user(dovecot)
    token = uuid.uuid4().hex
    dovecot.add_token(token, user)
    bearer = f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()

    with imaplib.IMAP4_SSL(
        "localhost", dovecot.imaps_port, ssl_context=trusting_ca(dovecot), timeout=TIMEOUT
    ) as client:
        typ, _ = client.authenticate("OAUTHBEARER", lambda _challenge: bearer)

    assert typ == "OK"


@pytest.mark.parametrize("whose", ["unknown", "another user's"])
def test_xoauth2_refuses_a_token_that_is_not_the_users(dovecot, whose):
    user, _ = new_user(dovecot)
    token = uuid.uuid4().hex
    if whose == "another user's":
        other, _ = new_user(dovecot)
        dovecot.add_token(token, other)

    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=NO_PENALTY_TIMEOUT) as client:
        with pytest.raises(imaplib.IMAP4.error):
            client.authenticate("XOAUTH2", xoauth2(user, token))


# --- POP3 and POP3S -------------------------------------------------------------------------


def uidl(client: poplib.POP3) -> list[bytes]:
    return client.uidl()[1]


def test_pop3_and_pop3s_log_in_and_list_the_same_stable_uidls(dovecot):
    # Given two mails
    user, password = new_user(dovecot)
    dovecot.deliver_many(user, [mail("one"), mail("two")])

    # When listed twice over POP3, then over POP3S and over POP3 with STLS
    listings = []
    for _ in range(2):
        client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
        client.user(user)
        client.pass_(password)
        listings.append(uidl(client))
        client.quit()
    client = poplib.POP3_SSL(
        "localhost", dovecot.pop3s_port, context=trusting_ca(dovecot), timeout=TIMEOUT
    )
    client.user(user)
    client.pass_(password)
    listings.append(uidl(client))
    client.quit()
    client = poplib.POP3("localhost", dovecot.pop3_port, timeout=TIMEOUT)
    client.stls(trusting_ca(dovecot))
    client.user(user)
    client.pass_(password)
    listings.append(uidl(client))
    client.quit()

    # Then every session saw the same two UIDLs (UID and UIDVALIDITY in hex)
    assert len(listings[0]) == 2
    assert all(listing == listings[0] for listing in listings)


def test_pop3_refuses_a_wrong_password(dovecot):
    user, _ = new_user(dovecot)
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=NO_PENALTY_TIMEOUT)
    client.user(user)
    with pytest.raises(poplib.error_proto, match="Authentication failed"):
        client.pass_("wrong")
    client.close()


# --- UIDVALIDITY and capabilities -----------------------------------------------------------


def test_a_uidvalidity_change_renumbers_the_inbox(dovecot):
    # Given two mails, the second seen, and the POP3 UIDLs a client remembered
    user, password = new_user(dovecot)
    dovecot.deliver_many(user, [mail("one"), mail("two")])
    dovecot.deliver(user, mail("three"), seen=True)
    before = dovecot.uidvalidity(user)
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    client.user(user)
    client.pass_(password)
    old_uidls = uidl(client)
    client.quit()

    # When the INBOX gets a new UIDVALIDITY
    after = dovecot.uidvalidity_change(user)

    # Then clients see the new value, the same mails and flags, and new UIDLs
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT) as client:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        assert client.response("UIDVALIDITY")[1] == [str(after).encode()]
    assert after != before
    assert dovecot.imap_uids(user) == [1, 2, 3]
    assert sorted(map(sorted, dovecot.imap_flags(user).values())) == [[], [], ["\\Seen"]]
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    client.user(user)
    client.pass_(password)
    assert set(uidl(client)).isdisjoint(old_uidls)
    client.quit()


def capabilities_after_login(server: Dovecot) -> list[str]:
    user, password = new_user(server)
    with imaplib.IMAP4(server.host, server.imap_port, timeout=TIMEOUT) as client:
        client.login(user, password)
        # imaplib keeps the capabilities from before login, which never list MOVE.
        _, data = client.capability()
    return data[-1].decode().upper().split()


def test_the_default_dovecot_announces_move(dovecot):
    assert "MOVE" in capabilities_after_login(dovecot)


def test_the_nomove_dovecot_lacks_move_but_keeps_uidplus(dovecot_nomove):
    capabilities = capabilities_after_login(dovecot_nomove)

    assert "MOVE" not in capabilities
    assert {"IMAP4REV1", "UIDPLUS", "IDLE"} <= set(capabilities)


# --- Proxies --------------------------------------------------------------------------------


def via_http_connect(proxy: Tinyproxy) -> Connector:
    def connect(host: str, port: int) -> socket.socket:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: what follows the head is the server's
            assert chunk, f"proxy closed the connection after {head!r}"
            head += chunk
        assert head.split()[1] == b"200", head
        return sock

    return connect


def via_socks5(proxy: Socks5Proxy) -> Connector:
    def connect(host: str, port: int) -> socket.socket:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
        sock.sendall(b"\x05\x01\x00")  # version 5, one method: no authentication
        assert recv_exactly(sock, 2) == b"\x05\x00"
        address = ipaddress.IPv4Address(host).packed
        sock.sendall(b"\x05\x01\x00\x01" + address + struct.pack("!H", port))  # CONNECT
        reply = recv_exactly(sock, 10)  # the bound address comes back as IPv4 too
        assert reply[:2] == b"\x05\x00", reply
        return sock

    return connect


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


class ProxiedIMAP4(imaplib.IMAP4):
    def __init__(self, connect: Connector, host: str, port: int) -> None:
        self._tunnel = connect
        super().__init__(host, port, timeout=TIMEOUT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._tunnel(self.host, self.port)


class ProxiedIMAP4SSL(imaplib.IMAP4_SSL):
    """IMAPS through a tunnel to `address`, verifying the certificate for `host`."""

    def __init__(
        self, connect: Connector, address: str, host: str, port: int, context: ssl.SSLContext
    ) -> None:
        self._tunnel = connect
        self._address = address
        super().__init__(host, port, ssl_context=context, timeout=TIMEOUT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = self._tunnel(self._address, self.port)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


@pytest.fixture(params=["http_proxy", "socks_proxy"])
def tunnel(request) -> Connector:
    """A connect(host, port) function through each kind of proxy."""
    proxy = request.getfixturevalue(request.param)
    return via_http_connect(proxy) if request.param == "http_proxy" else via_socks5(proxy)


def test_imap_through_a_proxy(dovecot, tunnel):
    user, password = new_user(dovecot)
    dovecot.deliver(user, mail("proxied"))

    with ProxiedIMAP4(tunnel, dovecot.host, dovecot.imap_port) as client:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        assert subjects(client, "1") == [b"Subject: proxied"]


def test_imaps_through_a_proxy_verifies_the_server_name(dovecot, tunnel):
    user, password = new_user(dovecot)

    with ProxiedIMAP4SSL(
        tunnel, dovecot.host, "localhost", dovecot.imaps_port, trusting_ca(dovecot)
    ) as client:
        typ, _ = client.login(user, password)

    assert typ == "OK"


# --- Life cycle -----------------------------------------------------------------------------


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of group `pgid` that have not exited.

    Exited ones are left out: children that outlive the server's main process are
    re-parented to PID 1, and the PID 1 of some containers never reaps them.
    """
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("server_class", [Dovecot, Tinyproxy, Socks5Proxy])
def test_stop_leaves_no_process_and_frees_the_port(tmp_path, server_class):
    server = server_class.start(tmp_path)
    leader = server.pid
    port = server.imap_port if server_class is Dovecot else server.port
    assert len(live_processes_in_group(leader)) >= 1

    server.stop()
    server.stop()  # a second stop is harmless

    assert server.pid is None

    assert live_processes_in_group(leader) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


@pytest.mark.parametrize(
    ("server_class", "package"),
    [(Dovecot, "dovecot-imapd"), (Tinyproxy, "tinyproxy"), (Socks5Proxy, "dante-server")],
)
def test_a_missing_binary_names_the_debian_package(tmp_path, monkeypatch, server_class, package):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(RuntimeError) as caught:
        server_class.start(tmp_path / "server")

    assert repr(package) in str(caught.value)
    assert "make test" in str(caught.value)
