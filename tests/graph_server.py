"""A fake Microsoft Graph mail API over TLS, with Graph's constraints and fault injection.

It serves one mailbox under ``{endpoint}/v1.0/users/{username}``: the inbox, its child
folders, messages with ``$value``, ``PATCH`` of ``isRead``, ``move``. What Graph refuses, it
refuses too, so a client mistake shows in tests: ``$top`` outside 1..1000, an ``$orderby``
whose properties do not lead the ``$filter`` (400 ``InefficientFilter``), a property Graph
does not have in ``$select``, an unknown token (401 ``InvalidAuthenticationToken``), a
duplicate folder (409 ``ErrorFolderExists``). Pages hold 10 mails unless ``$top`` says
otherwise (and at most ``page_cap``); ``@odata.nextLink`` is an absolute URL to the server
with an opaque ``$skiptoken``. A move gives the mail a new id unless the request had
``Prefer: IdType="ImmutableId"``; the old id then answers 404.

Example::

    with GraphServer(tmp_path / "graph", tokens={"t1"}) as graph:
        ref = graph.deliver(raw)
        box = {"graph_endpoint": graph.endpoint, "tls": {"ca_file": str(graph.ca_file)}, ...}
        graph.throttle("/messages", times=1, retry_after=0)   # the next matching request: 429
        graph.inbox()[0].is_read
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from certificates import ServerCertificates

__all__ = ["GraphServer", "MailView", "RecordedRequest"]

DEFAULT_PAGE = 10
IMMUTABLE = 'IdType="ImmutableId"'
_FIRST_DELIVERY = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
_MESSAGE_FIELDS = {
    "id", "receivedDateTime", "isRead", "internetMessageId", "subject", "parentFolderId",
    "sentDateTime", "hasAttachments", "from", "bodyPreview", "createdDateTime",
}  # fmt: skip
_FILTERABLE = {"receivedDateTime", "isRead"}
BrokenLink = Literal["not-a-url", "other-host", "not-json"]


@dataclass(frozen=True)
class MailView:
    """One mail as a test sees it."""

    id: str
    raw: bytes
    is_read: bool
    subject: str | None
    internet_message_id: str | None
    received_at: datetime


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    #: The path after the endpoint's own prefix, e.g. ``/v1.0/users/u/messages/ID``.
    path: str
    query: dict[str, str]
    #: The ``Prefer`` header asked for immutable ids.
    immutable_ids: bool
    #: The bearer token sent, or None.
    token: str | None


@dataclass
class _Mail:
    id: str
    raw: bytes
    received_at: datetime
    folder: str
    is_read: bool
    subject: str | None
    internet_message_id: str | None
    seq: int

    def view(self) -> MailView:
        return MailView(
            self.id, self.raw, self.is_read, self.subject, self.internet_message_id,
            self.received_at,
        )  # fmt: skip


@dataclass
class _Folder:
    id: str
    name: str
    parent: str | None


@dataclass
class _Fault:
    match: str
    method: str | None
    times: int
    status: int = 500
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.match in path and self.method in (None, method)


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Send the headers and half the body, then drop the connection.
    cut: bool = False


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = _error(status, code, message)


class GraphServer:
    """See the module docstring. Thread-safe; ``stop`` leaves no thread or socket open."""

    def __init__(
        self,
        folder: Path,
        *,
        username: str = "help@example.com",
        tokens: Iterable[str] = ("graph-token",),
        prefix: str = "",
        page_cap: int | None = None,
    ) -> None:
        """``folder``: where the TLS certificates go; ``prefix``: a path before ``/v1.0``
        (a base URL with a path); ``page_cap``: the most mails a page holds whatever $top."""
        self.certificates = ServerCertificates.make(folder)
        self.username = username
        self.prefix = prefix.rstrip("/")
        self.page_cap = page_cap
        self._tokens = set(tokens)
        self._lock = threading.RLock()
        self._mails: dict[str, _Mail] = {}
        self._inbox = _Folder(_new_id("AAMkAGF"), "Inbox", None)
        self._folders: dict[str, _Folder] = {self._inbox.id: self._inbox}
        self._faults: list[_Fault] = []
        self._broken_links: list[BrokenLink] = []
        self._log: list[RecordedRequest] = []
        self._seq = 0
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> GraphServer:
        server = _TlsServer(("127.0.0.1", 0), _Handler, self.certificates.server_context())
        server.graph = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-fake"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        server.cut_connections()
        server.server_close()  # joins the connections' threads
        self._server = self._thread = None

    def __enter__(self) -> GraphServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The base URL to set as ``graph_endpoint``."""
        assert self._server is not None, "start() the server first"
        return f"https://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    @property
    def ca_file(self) -> Path:
        """The CA a client must trust (``tls.ca_file``)."""
        return self.certificates.ca_file

    # -- tokens -----------------------------------------------------------------------------

    def accept_token(self, token: str) -> None:
        """Accept ``token`` from now on: the hook an OAuth fake calls for tokens it issues."""
        with self._lock:
            self._tokens.add(token)

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.discard(token)

    # -- mail -------------------------------------------------------------------------------

    def deliver(
        self, raw: bytes, received_at: datetime | None = None, *, is_read: bool = False
    ) -> str:
        """Put a mail into the inbox; its id. Without ``received_at`` it arrives a second
        after the latest mail."""
        headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
        with self._lock:
            self._seq += 1
            if received_at is None:
                latest = max((m.received_at for m in self._mails.values()), default=None)
                received_at = latest + timedelta(seconds=1) if latest else _FIRST_DELIVERY
            mail = _Mail(
                id=_new_id("AAMkAGI"),
                raw=bytes(raw),
                received_at=received_at.astimezone(UTC).replace(microsecond=0),
                folder=self._inbox.id,
                is_read=is_read,
                subject=_header(headers, "Subject"),
                internet_message_id=_header(headers, "Message-ID"),
                seq=self._seq,
            )
            self._mails[mail.id] = mail
            return mail.id

    def create_folder(self, name: str) -> str:
        """Make a child folder of the inbox behind the client's back; its id."""
        with self._lock:
            folder = _Folder(_new_id("AAMkAGF"), name, self._inbox.id)
            self._folders[folder.id] = folder
            return folder.id

    def inbox(self) -> list[MailView]:
        """The inbox's mails, oldest first."""
        with self._lock:
            return [m.view() for m in self._in_folder(self._inbox.id)]

    def folder_mail(self, name: str) -> list[MailView] | None:
        """The mails of the inbox's child folder ``name``, oldest first; None without it."""
        with self._lock:
            folder = self._child(name)
            return None if folder is None else [m.view() for m in self._in_folder(folder.id)]

    def child_folders(self) -> list[str]:
        with self._lock:
            return sorted(f.name for f in self._folders.values() if f.parent == self._inbox.id)

    def mail(self, mail_id: str) -> MailView | None:
        with self._lock:
            found = self._mails.get(mail_id)
            return found.view() if found else None

    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._log)

    # -- faults -----------------------------------------------------------------------------

    def respond(
        self,
        match: str,
        status: int,
        body: dict[str, Any],
        *,
        times: int = 1,
        method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests whose path contains ``match`` (and of ``method``) get
        this answer instead of the mailbox's (a stale listing, an error)."""
        payload = json.dumps(body).encode()
        self._add(_Fault(match, method, times, status, payload, headers=dict(headers or {})))

    def fail(
        self,
        match: str,
        status: int,
        code: str = "InternalServerError",
        *,
        times: int = 1,
        method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests whose path contains ``match`` (and of ``method``) get
        ``status`` with Graph's error body."""
        body = {"error": {"code": code, "message": f"injected {code}"}}
        self.respond(match, status, body, times=times, method=method, headers=headers)

    def throttle(
        self,
        match: str = "",
        *,
        times: int = 1,
        status: int = 429,
        retry_after: float = 0,
        method: str | None = None,
    ) -> None:
        """429 (or 503) with ``Retry-After`` for the next ``times`` matching requests."""
        code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        headers = {"Retry-After": f"{retry_after:g}"}
        self.fail(match, status, code, times=times, method=method, headers=headers)

    def answer_html(self, match: str = "", *, times: int = 1, status: int = 200) -> None:
        """An HTML page (a sign-in portal, a web server) for the next matching requests."""
        page = b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"
        self._add(_Fault(match, None, times, status, page, "text/html; charset=utf-8"))

    def cut_value(self, times: int = 1) -> None:
        """The next ``$value`` downloads send half the mail, then drop the connection."""
        self._add(_Fault("/$value", "GET", times, cut=True))

    def break_next_link(self, how: BrokenLink, times: int = 1) -> None:
        """The next listing pages that have a next page give a broken ``@odata.nextLink``."""
        with self._lock:
            self._broken_links += [how] * times

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    # -- serving (called by the handler, under the lock) ------------------------------------

    def answer(self, method: str, url: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(url)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        immutable = IMMUTABLE.lower() in headers.get("prefer", "").lower()
        with self._lock:
            if path.startswith(self.prefix):
                path = path[len(self.prefix) :]
            self._log.append(RecordedRequest(method, path, query, immutable, token))
            if path == "/not-json":
                return _Answer(200, b"this is not JSON", "text/plain")
            if token is None or token not in self._tokens:
                answer = _error(401, "InvalidAuthenticationToken", "Access token is invalid.")
                answer.headers["WWW-Authenticate"] = 'Bearer realm=""'
                return answer
            if (fault := self._take_fault(method, path)) is not None:
                return fault
            try:
                return self._route(method, path, query, body, immutable)
            except GraphError as exc:
                return exc.answer

    def _take_fault(self, method: str, path: str) -> _Answer | None:
        for fault in self._faults:
            if not fault.cut and fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return _Answer(fault.status, fault.body, fault.content_type, fault.headers)
        return None

    def _route(
        self, method: str, path: str, query: dict[str, str], body: bytes, immutable: bool
    ) -> _Answer:
        if not path.startswith("/v1.0/"):
            raise GraphError(400, "BadRequest", "Invalid version.")
        head, _, rest = path.removeprefix("/v1.0/users/").partition("/")
        if head.lower() != self.username.lower():
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{head}' is invalid.")
        seg = rest.split("/") if rest else []
        match (method, seg):
            case ("GET", ["mailFolders", f]):
                return _json_answer(200, self._folder_json(self._folder(f)))
            case ("GET", ["mailFolders", f, "messages"]):
                return self._list(self._folder(f), query, f"mailFolders/{f}/messages")
            case ("GET", ["mailFolders", f, "childFolders"]):
                return self._children(self._folder(f), query)
            case ("POST", ["mailFolders", f, "childFolders"]):
                return self._create_folder(self._folder(f), _body(body))
            case ("GET", ["messages", m]):
                return _json_answer(
                    200, _select(self._message_json(self._mail(m)), _selected(query.get("$select")))
                )
            case ("GET", ["messages", m, "$value"]):
                return self._value(self._mail(m), method)
            case ("PATCH", ["messages", m]):
                return self._update(self._mail(m), _body(body))
            case ("POST", ["messages", m, "move"]):
                return self._move(self._mail(m), _body(body), immutable)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest}'.")

    # -- routes -----------------------------------------------------------------------------

    def _list(self, folder: _Folder, query: dict[str, str], path: str) -> _Answer:
        top = _top(query)
        clauses = _filter(query.get("$filter"))
        order = _orderby(query.get("$orderby"))
        filtered = [c[0] for c in clauses]
        if clauses and order and filtered[: len(order)] != [p for p, _ in order]:
            raise GraphError(
                400, "InefficientFilter", "The restriction or sort order is too complex for this "
                "operation.",
            )  # fmt: skip
        select = _selected(query.get("$select"))
        mails = [m for m in self._in_folder(folder.id) if all(_holds(m, c) for c in clauses)]
        if not order or order[0][1] == "desc":
            mails.reverse()  # Graph's default order: newest first
        start = _skip(query.get("$skiptoken"))
        size = min(top, self.page_cap or top)
        page = mails[start : start + size]
        answer: dict[str, Any] = {"value": [_select(self._message_json(m), select) for m in page]}
        if start + size < len(mails):
            answer["@odata.nextLink"] = self._next_link(path, query, start + size)
        return _json_answer(200, answer)

    def _next_link(self, path: str, query: dict[str, str], offset: int) -> str:
        token = base64.urlsafe_b64encode(f"offset={offset}".encode()).decode()
        params = {k: v for k, v in query.items() if k != "$skiptoken"} | {"$skiptoken": token}
        link = f"{self.endpoint}/v1.0/users/{self.username}/{path}?{urlencode(params)}"
        if self._broken_links:
            how = self._broken_links.pop(0)
            if how == "not-a-url":
                return f"page-2?{urlencode(params)}"
            if how == "other-host":
                return link.replace("127.0.0.1", "graph.example.invalid", 1)
            return f"{self.endpoint}/not-json?{urlencode(params)}"
        return link

    def _children(self, parent: _Folder, query: dict[str, str]) -> _Answer:
        _top(query)
        name = _name_filter(query.get("$filter"))
        found = [
            f for f in self._folders.values()
            if f.parent == parent.id and (name is None or f.name.lower() == name.lower())
        ]  # fmt: skip
        return _json_answer(200, {"value": [self._folder_json(f) for f in found]})

    def _create_folder(self, parent: _Folder, body: dict[str, Any]) -> _Answer:
        name = body.get("displayName")
        if not isinstance(name, str) or not name:
            raise GraphError(400, "ErrorInvalidParameter", "displayName is required.")
        if any(
            f.parent == parent.id and f.name.lower() == name.lower() for f in self._folders.values()
        ):
            raise GraphError(
                409, "ErrorFolderExists", "A folder with the specified name already exists."
            )
        folder = _Folder(_new_id("AAMkAGF"), name, parent.id)
        self._folders[folder.id] = folder
        return _json_answer(201, self._folder_json(folder))

    def _value(self, mail: _Mail, method: str) -> _Answer:
        cut = any(f.cut and f.matches(method, "/$value") for f in self._faults)
        if cut:
            self._take_cut()
        return _Answer(200, mail.raw, "text/plain", cut=cut)

    def _take_cut(self) -> None:
        for fault in self._faults:
            if fault.cut:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return

    def _update(self, mail: _Mail, body: dict[str, Any]) -> _Answer:
        if "isRead" in body:
            if not isinstance(body["isRead"], bool):
                raise GraphError(400, "ErrorInvalidProperty", "isRead must be a boolean.")
            mail.is_read = body["isRead"]
        return _json_answer(200, self._message_json(mail))

    def _move(self, mail: _Mail, body: dict[str, Any], immutable: bool) -> _Answer:
        destination = body.get("destinationId")
        if not isinstance(destination, str):
            raise GraphError(400, "ErrorInvalidParameter", "destinationId is required.")
        target = self._folder(destination)
        mail.folder = target.id
        if not immutable:  # a regular id names the mail in its folder: it changes
            del self._mails[mail.id]
            mail.id = _new_id("AAMkAGI")
            self._mails[mail.id] = mail
        return _json_answer(201, self._message_json(mail))

    # -- state ------------------------------------------------------------------------------

    def _folder(self, name_or_id: str) -> _Folder:
        if name_or_id.lower() == "inbox":
            return self._inbox
        found = self._folders.get(name_or_id)
        if found is None:
            raise _not_found(name_or_id)
        return found

    def _child(self, name: str) -> _Folder | None:
        return next(
            (f for f in self._folders.values() if f.parent == self._inbox.id and f.name == name),
            None,
        )

    def _mail(self, mail_id: str) -> _Mail:
        if not mail_id.startswith("AAMk"):
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        found = self._mails.get(mail_id)
        if found is None:
            raise _not_found(mail_id)
        return found

    def _in_folder(self, folder_id: str) -> list[_Mail]:
        found = [m for m in self._mails.values() if m.folder == folder_id]
        return sorted(found, key=lambda m: (m.received_at, m.seq))

    def _folder_json(self, folder: _Folder) -> dict[str, Any]:
        count = [m for m in self._mails.values() if m.folder == folder.id]
        return {
            "id": folder.id,
            "displayName": folder.name,
            "parentFolderId": folder.parent,
            "totalItemCount": len(count),
            "unreadItemCount": sum(not m.is_read for m in count),
        }

    def _message_json(self, mail: _Mail) -> dict[str, Any]:
        return {
            "@odata.etag": f'W/"{mail.seq}"',
            "id": mail.id,
            "receivedDateTime": _iso(mail.received_at),
            "createdDateTime": _iso(mail.received_at),
            "sentDateTime": _iso(mail.received_at),
            "isRead": mail.is_read,
            "internetMessageId": mail.internet_message_id,
            "subject": mail.subject,
            "parentFolderId": mail.folder,
            "hasAttachments": False,
            "bodyPreview": "",
        }


# -- the HTTP side ----------------------------------------------------------------------------


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every connection's thread
    block_on_close = True
    graph: GraphServer

    def __init__(self, address: tuple[str, int], handler: type, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # Headers and body go out in two writes: with Nagle, the second waits for the
        # client's delayed ACK (40 ms a request), which no real server makes it wait.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake happens in the connection's thread: a stalled client holds up no one.
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.connections_lock:
            self.connections.add(tls)
        return tls, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.connections_lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that refuse the certificate or hang up are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _TlsServer

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.graph.answer(self.command, self.path, headers, body)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.cut:
            self.send_header("Connection", "close")
        self.end_headers()
        if answer.cut:
            self.wfile.write(answer.body[: len(answer.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- OData ------------------------------------------------------------------------------------

Clause = tuple[str, str, Any]


def _top(query: dict[str, str]) -> int:
    raw = query.get("$top")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for $top: must be 1..1000.")
    return int(raw)


def _filter(text: str | None) -> list[Clause]:
    if not text:
        return []
    clauses = []
    for part in _split_and(text):
        words = part.split(" ", 2)
        if len(words) != 3 or words[0] not in _FILTERABLE:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {part!r}.")
        prop, op, value = words
        if prop == "isRead" and op in ("eq", "ne") and value in ("true", "false"):
            clauses.append((prop, op, value == "true"))
        elif prop == "receivedDateTime" and op in ("ge", "gt", "le", "lt"):
            try:
                clauses.append((prop, op, datetime.fromisoformat(value)))
            except ValueError:
                raise GraphError(400, "BadRequest", f"Invalid date {value!r}.") from None
        else:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {part!r}.")
    return clauses


def _split_and(text: str) -> list[str]:
    parts = []
    for chunk in text.replace(" AND ", " and ").split(" and "):
        parts.append(" ".join(chunk.split()))
    return parts


def _holds(mail: _Mail, clause: Clause) -> bool:
    prop, op, value = clause
    have: Any = mail.is_read if prop == "isRead" else mail.received_at
    return {
        "eq": lambda: have == value,
        "ne": lambda: have != value,
        "ge": lambda: have >= value,
        "gt": lambda: have > value,
        "le": lambda: have <= value,
        "lt": lambda: have < value,
    }[op]()


def _orderby(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    order = []
    for part in text.split(","):
        words = part.split()
        direction = words[1].lower() if len(words) > 1 else "asc"
        if not words or words[0] not in ("receivedDateTime",) or direction not in ("asc", "desc"):
            raise GraphError(400, "BadRequest", f"Invalid $orderby: {text!r}.")
        order.append((words[0], direction))
    return order


def _selected(text: str | None) -> set[str] | None:
    if not text:
        return None
    names = {n.strip() for n in text.split(",")}
    unknown = sorted(names - _MESSAGE_FIELDS)
    if unknown:
        raise GraphError(
            400,
            "RequestBroker--ParseUri",
            f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.message'.",
        )
    return names


def _select(item: dict[str, Any], select: set[str] | None) -> dict[str, Any]:
    if select is None:
        return item
    return {k: v for k, v in item.items() if k in select or k in ("id", "@odata.etag")}


def _name_filter(text: str | None) -> str | None:
    if not text:
        return None
    head = "displayName eq '"
    if not (text.startswith(head) and text.endswith("'")):
        raise GraphError(400, "BadRequest", f"Invalid filter clause: {text!r}.")
    inner = text[len(head) : -1]
    if "'" in inner.replace("''", ""):
        raise GraphError(400, "BadRequest", "Syntax error: a quote in a string is not doubled.")
    return inner.replace("''", "'")


def _skip(token: str | None) -> int:
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        return int(text.removeprefix("offset="))
    except ValueError:
        raise GraphError(400, "BadRequest", "Invalid $skiptoken.") from None


# -- helpers ----------------------------------------------------------------------------------


def _json_answer(status: int, body: dict[str, Any]) -> _Answer:
    return _Answer(status, json.dumps(body).encode(), "application/json; odata.metadata=minimal")


def _error(status: int, code: str, message: str) -> _Answer:
    return _json_answer(status, {"error": {"code": code, "message": message}})


def _body(body: bytes) -> dict[str, Any]:
    try:
        found = json.loads(body or b"{}")
    except ValueError:
        raise GraphError(400, "BadRequest", "The body is not JSON.") from None
    if not isinstance(found, dict):
        raise GraphError(400, "BadRequest", "The body is not a JSON object.")
    return found


def _not_found(what: str) -> GraphError:
    return GraphError(404, "ErrorItemNotFound", f"The specified object was not found: {what}.")


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}AAA="


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except (ValueError, IndexError):  # a header the parser cannot read
        return None
    return str(value).strip() if value is not None else None
