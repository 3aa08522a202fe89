"""A fake Exchange Web Services endpoint: real SOAP over real HTTP(S) on 127.0.0.1.

It answers what exchangelib sends to read a mailbox (GetFolder, FindItem, GetItem,
FindFolder, CreateFolder, UpdateItem, MoveItem, ConvertId) with the envelope, namespaces,
``ServerVersionInfo`` header and XSD element order of Exchange 2016. Folders and mail live in
memory, guarded by one lock: tests and the client's requests may come from any thread.

Example::

    with FakeEws(tmp_path, users={"help@example.test": "secret"}) as ews:
        item_id = ews.deliver(raw)
        box = {"connect_url": ews.url, "tls": {"ca_file": str(ews.ca_file)}, ...}
        ...
        assert ews.inbox()[0].is_read
        ews.fail_next("FindItem", Fault.busy(back_off_ms=20), times=2)

Auth: ``users`` (Basic) and ``tokens`` (Bearer; ``add_token`` or a ``token_check`` callable
that an OAuth fake may feed). ``page_cap`` caps a FindItem/FindFolder page whatever the client
asks for, like Exchange's EWSFindCountLimit.
"""

from __future__ import annotations

import base64
import itertools
import socket
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from certificates import ServerCertificates

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
PATH = "/EWS/Exchange.asmx"
_ID_PREFIX = "AAMkAGFrZS"  # every id this server hands out starts so; others are "malformed"


@dataclass
class StoredMail:
    item_id: str
    raw: bytes
    received_at: datetime
    is_read: bool
    seq: int
    change: int = 1

    @property
    def changekey(self) -> str:
        return f"CQAAABYAAAA{self.change}"


@dataclass
class StoredFolder:
    folder_id: str
    name: str
    parent_id: str | None
    distinguished: str | None = None
    mails: dict[str, StoredMail] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """What the server answers instead of doing an operation (see ``fail_next``)."""

    kind: str  # busy | status | html | cut | unauthorized
    back_off_ms: int = 0
    status: int = 503
    retry_after: str | None = None

    @classmethod
    def busy(cls, back_off_ms: int = 0) -> Fault:
        """A SOAP fault ErrorServerBusy with ``BackOffMilliseconds`` (HTTP 500)."""
        return cls("busy", back_off_ms=back_off_ms)

    @classmethod
    def http(cls, status: int = 503, retry_after: float | str | None = None) -> Fault:
        """A bare HTTP error (503, 429, 500, ...), with ``Retry-After`` when given."""
        return cls(
            "status", status=status, retry_after=None if retry_after is None else str(retry_after)
        )

    @classmethod
    def html(cls) -> Fault:
        """HTTP 200 with an HTML page, as a portal or wrong URL answers."""
        return cls("html")

    @classmethod
    def cut(cls) -> Fault:
        """The right answer, cut off in the middle (Content-Length says more)."""
        return cls("cut")

    @classmethod
    def unauthorized(cls) -> Fault:
        """HTTP 401, whatever the credentials."""
        return cls("unauthorized")


class FakeEws:
    """An EWS endpoint with one mailbox (any SMTP address reaches it)."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        tls: bool = True,
        users: dict[str, str] | None = None,
        tokens: Iterable[str] = (),
        token_check: Callable[[str], bool] | None = None,
        page_cap: int = 1000,
    ) -> None:
        """``folder``: where the TLS certificates go (required with ``tls``)."""
        if tls and folder is None:
            raise ValueError("a TLS fake needs a folder for its certificates")
        self.certificates = ServerCertificates.make(folder) if tls and folder else None
        self.users = dict(users or {})
        self.tokens = set(tokens)
        self.token_check = token_check
        self.page_cap = page_cap
        #: Operation name of every SOAP request received, in order (faulted ones included).
        self.requests: list[str] = []
        #: ``(scheme, user or token)`` of every request's Authorization header.
        self.logins: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._faults: dict[str, list[Fault | None]] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._last_received: datetime | None = None
        self._folders: dict[str, StoredFolder] = {}
        root = self._new_folder("Root", None, "root")
        top = self._new_folder("Top of Information Store", root.folder_id, "msgfolderroot")
        self._inbox = self._new_folder("Inbox", top.folder_id, "inbox")
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeEws:
        context = self.certificates.server_context() if self.certificates else None
        self._server = _Server(("127.0.0.1", 0), _Handler, self, context)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; no thread is left running."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()  # joins the connection threads
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FakeEws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (kept after ``stop``, for tests of a server that is down)."""
        assert self._port is not None, "not started"
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.certificates else "http"
        return f"{scheme}://localhost:{self.port}{PATH}"

    @property
    def ca_file(self) -> Path:
        assert self.certificates is not None, "a plain-http fake has no CA"
        return self.certificates.ca_file

    # -- test API --------------------------------------------------------------------------

    def deliver(
        self, raw: bytes, received_at: datetime | None = None, *, folder: str | None = None
    ) -> str:
        """Put an unread mail in the inbox (or the folder named ``folder``); its ItemId.

        Without ``received_at`` each mail is received a second after the one before, so the
        order of delivery is the order of DateTimeReceived (which has whole seconds).
        """
        with self._lock:
            if received_at is None:
                now = datetime.now(UTC).replace(microsecond=0)
                last = self._last_received
                received_at = now if last is None or now > last else last + timedelta(seconds=1)
            self._last_received = max(received_at, self._last_received or received_at)
            target = self._inbox if folder is None else self._folder_named(folder, create=True)
            mail = StoredMail(self._new_id(), bytes(raw), received_at, False, next(self._seq))
            target.mails[mail.item_id] = mail
            return mail.item_id

    def inbox(self) -> list[StoredMail]:
        """The inbox's mails, oldest first (copies)."""
        return self.folder("Inbox") or []

    def folder(self, name: str) -> list[StoredMail] | None:
        """The mails of the folder named ``name`` (any parent), oldest first; None if none."""
        with self._lock:
            found = self._folder_named(name)
            if found is None:
                return None
            return [_copy(m) for m in _oldest_first(found.mails.values())]

    def folder_names(self) -> list[str]:
        with self._lock:
            return [f.name for f in self._folders.values()]

    def add_folder(self, name: str, parent: str = "Inbox") -> str:
        """Create a folder under ``parent`` (by name); its FolderId."""
        with self._lock:
            under = self._folder_named(parent)
            assert under is not None, parent
            return self._new_folder(name, under.folder_id).folder_id

    def add_token(self, token: str) -> None:
        with self._lock:
            self.tokens.add(token)

    def fail_next(self, operation: str, fault: Fault, times: int = 1, *, after: int = 0) -> None:
        """Answer ``times`` requests of ``operation`` ("*": any) with ``fault``, once
        ``after`` more of them were answered normally."""
        with self._lock:
            self._faults.setdefault(operation, []).extend([None] * after + [fault] * times)

    def operations(self) -> list[str]:
        with self._lock:
            return list(self.requests)

    # -- state helpers (lock held) ----------------------------------------------------------

    def _new_id(self) -> str:
        return f"{_ID_PREFIX}{next(self._ids):08d}{uuid.uuid4().hex}AAA="

    def _new_folder(
        self, name: str, parent_id: str | None, distinguished: str | None = None
    ) -> StoredFolder:
        folder = StoredFolder(
            f"AQMkAGZvbGRlc{uuid.uuid4().hex}AAA=", name, parent_id, distinguished
        )
        self._folders[folder.folder_id] = folder
        return folder

    def _folder_named(self, name: str, *, create: bool = False) -> StoredFolder | None:
        for folder in self._folders.values():
            if folder.name == name:
                return folder
        if create:
            return self._new_folder(name, self._inbox.folder_id)
        return None

    def _find_mail(self, item_id: str) -> tuple[StoredFolder, StoredMail] | None:
        for folder in self._folders.values():
            if item_id in folder.mails:
                return folder, folder.mails[item_id]
        return None

    def _take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for key in (operation, "*"):
                queue = self._faults.get(key)
                if queue:
                    return queue.pop(0)  # None: this one passes
        return None

    def _authorized(self, header: str | None) -> bool:
        if not header or " " not in header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            with self._lock:
                self.logins.append(("Basic", user))
                return self.users.get(user) == password
        if scheme.lower() == "bearer":
            with self._lock:
                self.logins.append(("Bearer", value))
                known = value in self.tokens
            return known or (self.token_check is not None and self.token_check(value))
        return False

    # -- operations -----------------------------------------------------------------------

    def answer(self, operation: str, request: ET.Element) -> str:
        """The SOAP body content for one request (a ``m:<Op>Response`` element)."""
        handler = _OPERATIONS.get(operation)
        if handler is None:
            return _fault_xml("ErrorInvalidRequest", f"{operation} is not supported by the fake")
        with self._lock:
            messages = handler(self, request)
        return (
            f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>'
            + "".join(messages)
            + f"</m:ResponseMessages></m:{operation}Response>"
        )

    def _resolve_folder(self, elem: ET.Element) -> StoredFolder | None:
        if elem.tag == f"{{{T}}}DistinguishedFolderId":
            wanted = elem.get("Id")
            return next((f for f in self._folders.values() if f.distinguished == wanted), None)
        return self._folders.get(elem.get("Id") or "")

    def _folder_refs(self, container: ET.Element | None) -> list[ET.Element]:
        return list(container) if container is not None else []

    def op_get_folder(self, request: ET.Element) -> list[str]:
        out = []
        for ref in self._folder_refs(request.find(f"{{{M}}}FolderIds")):
            folder = self._resolve_folder(ref)
            if folder is None:
                out.append(_error("GetFolder", "ErrorFolderNotFound", "The folder was not found."))
            else:
                body = f"<m:Folders>{self._folder_xml(folder)}</m:Folders>"
                out.append(_success("GetFolder", body))
        return out

    def op_find_folder(self, request: ET.Element) -> list[str]:
        parents = [
            self._resolve_folder(r)
            for r in self._folder_refs(request.find(f"{{{M}}}ParentFolderIds"))
        ]
        deep = request.get("Traversal") == "Deep"
        restriction = request.find(f"{{{M}}}Restriction")
        out = []
        for parent in parents:
            if parent is None:
                out.append(_error("FindFolder", "ErrorFolderNotFound", "The folder was not found."))
                continue
            found = [
                f
                for f in self._children(parent, deep)
                if restriction is None or _matches(restriction[0], _folder_fields(f))
            ]
            page, offset, last = self._page(request, "IndexedPageFolderView", found)
            folders = "".join(self._folder_xml(f) for f in page)
            root = (
                f'<m:RootFolder IndexedPagingOffset="{offset}" TotalItemsInView="{len(found)}" '
                f'IncludesLastItemInRange="{_bool(last)}"><t:Folders>{folders}</t:Folders></m:RootFolder>'
            )
            out.append(_success("FindFolder", root))
        return out

    def _children(self, parent: StoredFolder, deep: bool) -> list[StoredFolder]:
        direct = [f for f in self._folders.values() if f.parent_id == parent.folder_id]
        if not deep:
            return direct
        return [g for f in direct for g in [f, *self._children(f, True)]]

    def op_create_folder(self, request: ET.Element) -> list[str]:
        parent_ref = request.find(f"{{{M}}}ParentFolderId")
        parent = (
            self._resolve_folder(parent_ref[0])
            if parent_ref is not None and len(parent_ref)
            else None
        )
        out = []
        for elem in _kids(request, "Folders"):
            name = elem.findtext(f"{{{T}}}DisplayName") or ""
            if parent is None:
                out.append(_error("CreateFolder", "ErrorParentFolderNotFound", "Parent not found."))
            elif any(f.name == name for f in self._children(parent, False)):
                out.append(
                    _error("CreateFolder", "ErrorFolderExists", "A folder with that name exists.")
                )
            else:
                folder = self._new_folder(name, parent.folder_id)
                tag = _local(elem.tag)
                ids = f'<t:FolderId Id={quoteattr(folder.folder_id)} ChangeKey="AQAAAA=="/>'
                out.append(
                    _success("CreateFolder", f"<m:Folders><t:{tag}>{ids}</t:{tag}></m:Folders>")
                )
        return out

    def op_find_item(self, request: ET.Element) -> list[str]:
        shape = _shape(request.find(f"{{{M}}}ItemShape"))
        restriction = request.find(f"{{{M}}}Restriction")
        order = request.find(f"{{{M}}}SortOrder")
        out = []
        for ref in self._folder_refs(request.find(f"{{{M}}}ParentFolderIds")):
            folder = self._resolve_folder(ref)
            if folder is None:
                out.append(_error("FindItem", "ErrorFolderNotFound", "The folder was not found."))
                continue
            mails = [
                m
                for m in folder.mails.values()
                if restriction is None or _matches(restriction[0], _mail_fields(m))
            ]
            mails = _sorted(mails, order)
            page, offset, last = self._page(request, "IndexedPageItemView", mails)
            items = "".join(self._item_xml(folder, m, shape, for_find=True) for m in page)
            root = (
                f'<m:RootFolder IndexedPagingOffset="{offset}" TotalItemsInView="{len(mails)}" '
                f'IncludesLastItemInRange="{_bool(last)}"><t:Items>{items}</t:Items></m:RootFolder>'
            )
            out.append(_success("FindItem", root))
        return out

    def _page(self, request: ET.Element, view_tag: str, found: list) -> tuple[list, int, bool]:  # type: ignore[type-arg]
        view = request.find(f"{{{M}}}{view_tag}")
        start, size = 0, len(found)
        if view is not None:
            start = int(view.get("Offset") or 0)
            size = int(view.get("MaxEntriesReturned") or len(found))
            if view.get("BasePoint") == "End":
                start = max(len(found) - start - size, 0)
        size = min(size, self.page_cap)
        page = found[start : start + size]
        end = start + len(page)
        return page, end, end >= len(found)

    def op_get_item(self, request: ET.Element) -> list[str]:
        shape = _shape(request.find(f"{{{M}}}ItemShape"))
        out = []
        for ref in _kids(request, "ItemIds"):
            found = self._item_or_error("GetItem", ref.get("Id") or "")
            if isinstance(found, str):
                out.append(found)
                continue
            folder, mail = found
            out.append(
                _success("GetItem", f"<m:Items>{self._item_xml(folder, mail, shape)}</m:Items>")
            )
        return out

    def _item_or_error(self, operation: str, item_id: str) -> tuple[StoredFolder, StoredMail] | str:
        if not item_id.startswith(_ID_PREFIX):
            return _error(operation, "ErrorInvalidIdMalformed", "Id is malformed.")
        found = self._find_mail(item_id)
        if found is None:
            return _error(
                operation,
                "ErrorItemNotFound",
                "The specified object was not found in the store., The process failed to get the "
                "correct properties.",
            )
        return found

    def op_update_item(self, request: ET.Element) -> list[str]:
        out = []
        for change in _kids(request, "ItemChanges"):
            ref = change.find(f"{{{T}}}ItemId")
            found = self._item_or_error("UpdateItem", ref.get("Id") if ref is not None else "")  # type: ignore[arg-type]
            if isinstance(found, str):
                out.append(found)
                continue
            _, mail = found
            for update in _kids(change, "Updates", T):
                uri = update.find(f"{{{T}}}FieldURI")
                if uri is not None and uri.get("FieldURI") == "message:IsRead":
                    if _local(update.tag) == "DeleteItemField":
                        mail.is_read = False
                    else:
                        mail.is_read = _truthy(update.findtext(f".//{{{T}}}IsRead"))
            mail.change += 1
            body = (
                f"<m:Items><t:Message>{_item_id(mail)}</t:Message></m:Items>"
                "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"
            )
            out.append(_success("UpdateItem", body))
        return out

    def op_move_item(self, request: ET.Element) -> list[str]:
        to = request.find(f"{{{M}}}ToFolderId")
        target = self._resolve_folder(to[0]) if to is not None and len(to) else None
        out = []
        for ref in _kids(request, "ItemIds"):
            found = self._item_or_error("MoveItem", ref.get("Id") or "")
            if isinstance(found, str):
                out.append(found)
                continue
            if target is None:
                out.append(
                    _error("MoveItem", "ErrorMoveCopyFailed", "The destination was not found.")
                )
                continue
            source, mail = found
            del source.mails[mail.item_id]
            moved = StoredMail(self._new_id(), mail.raw, mail.received_at, mail.is_read, mail.seq)
            target.mails[moved.item_id] = moved
            out.append(
                _success("MoveItem", f"<m:Items><t:Message>{_item_id(moved)}</t:Message></m:Items>")
            )
        return out

    def op_convert_id(self, request: ET.Element) -> list[str]:
        return [_error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")]

    # -- XML of things -----------------------------------------------------------------------

    def _folder_xml(self, folder: StoredFolder) -> str:
        parent = (
            f'<t:ParentFolderId Id={quoteattr(folder.parent_id)} ChangeKey="AQAAAA=="/>'
            if folder.parent_id
            else ""
        )
        unread = sum(1 for m in folder.mails.values() if not m.is_read)
        children = sum(1 for f in self._folders.values() if f.parent_id == folder.folder_id)
        return (
            f'<t:Folder><t:FolderId Id={quoteattr(folder.folder_id)} ChangeKey="AQAAAA=="/>{parent}'
            f"<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{escape(folder.name)}</t:DisplayName>"
            f"<t:TotalCount>{len(folder.mails)}</t:TotalCount>"
            f"<t:ChildFolderCount>{children}</t:ChildFolderCount>"
            f"<t:UnreadCount>{unread}</t:UnreadCount></t:Folder>"
        )

    def _item_xml(
        self, folder: StoredFolder, mail: StoredMail, shape: set[str], *, for_find: bool = False
    ) -> str:
        parts = []
        # XSD order of ItemType, then MessageType.
        if "item:MimeContent" in shape and not for_find:  # FindItem never returns MIME
            encoded = base64.b64encode(mail.raw).decode()
            parts.append(f'<t:MimeContent CharacterSet="UTF-8">{encoded}</t:MimeContent>')
        parts.append(_item_id(mail))
        if "item:ParentFolderId" in shape:
            parts.append(
                f'<t:ParentFolderId Id={quoteattr(folder.folder_id)} ChangeKey="AQAAAA=="/>'
            )
        if "item:ItemClass" in shape:
            parts.append("<t:ItemClass>IPM.Note</t:ItemClass>")
        headers = (
            _headers(mail.raw) if shape & {"item:Subject", "message:InternetMessageId"} else {}
        )
        if "item:Subject" in shape:
            parts.append(f"<t:Subject>{_text(headers.get('subject', ''))}</t:Subject>")
        if "item:DateTimeReceived" in shape:
            stamp = mail.received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            parts.append(f"<t:DateTimeReceived>{stamp}</t:DateTimeReceived>")
        if "item:Size" in shape:
            parts.append(f"<t:Size>{len(mail.raw)}</t:Size>")
        if "message:InternetMessageId" in shape and headers.get("message-id"):
            parts.append(
                f"<t:InternetMessageId>{_text(headers['message-id'])}</t:InternetMessageId>"
            )
        if "message:IsRead" in shape:
            parts.append(f"<t:IsRead>{_bool(mail.is_read)}</t:IsRead>")
        return "<t:Message>" + "".join(parts) + "</t:Message>"


_OPERATIONS: dict[str, Callable[[FakeEws, ET.Element], list[str]]] = {
    "GetFolder": FakeEws.op_get_folder,
    "FindFolder": FakeEws.op_find_folder,
    "CreateFolder": FakeEws.op_create_folder,
    "FindItem": FakeEws.op_find_item,
    "GetItem": FakeEws.op_get_item,
    "UpdateItem": FakeEws.op_update_item,
    "MoveItem": FakeEws.op_move_item,
    "ConvertId": FakeEws.op_convert_id,
}

_DEFAULT_SHAPE = {
    "item:ItemClass", "item:Subject", "item:DateTimeReceived", "item:Size",
    "message:InternetMessageId", "message:IsRead", "item:ParentFolderId",
}  # fmt: skip


def _kids(parent: ET.Element, tag: str, ns: str = M) -> list[ET.Element]:
    found = parent.find(f"{{{ns}}}{tag}")
    return list(found) if found is not None else []


def _shape(elem: ET.Element | None) -> set[str]:
    if elem is None:
        return set()
    fields = {u.get("FieldURI") or "" for u in elem.iter(f"{{{T}}}FieldURI")}
    base = elem.findtext(f"{{{T}}}BaseShape")
    return fields | (_DEFAULT_SHAPE if base in ("Default", "AllProperties") else set())


def _mail_fields(mail: StoredMail) -> dict[str, str]:
    return {
        "message:IsRead": _bool(mail.is_read),
        "item:Subject": _headers(mail.raw).get("subject", ""),
    }


def _folder_fields(folder: StoredFolder) -> dict[str, str]:
    return {"folder:DisplayName": folder.name, "folder:FolderClass": "IPF.Note"}


def _matches(cond: ET.Element, fields: dict[str, str]) -> bool:
    """Evaluate a restriction on the fields this fake knows (others never match)."""
    kind = _local(cond.tag)
    if kind == "And":
        return all(_matches(c, fields) for c in cond)
    if kind == "Or":
        return any(_matches(c, fields) for c in cond)
    if kind == "Not":
        return not _matches(cond[0], fields)
    uri = cond.find(f"{{{T}}}FieldURI")
    constant = cond.find(f".//{{{T}}}Constant")
    if uri is None or constant is None:
        return False
    have, want = fields.get(uri.get("FieldURI") or ""), constant.get("Value") or ""
    if have is None:
        return False
    if have in ("true", "false"):
        want = _bool(_truthy(want))
    if kind == "IsEqualTo":
        return have == want
    if kind == "IsNotEqualTo":
        return have != want
    if kind == "Contains":
        return want.lower() in have.lower()
    return False


def _sorted(mails: list[StoredMail], order: ET.Element | None) -> list[StoredMail]:
    field_order = order.find(f"{{{T}}}FieldOrder") if order is not None else None
    if field_order is None:
        return list(reversed(_oldest_first(mails)))  # Exchange's default view: newest first
    uri = field_order.find(f"{{{T}}}FieldURI")
    if uri is None or uri.get("FieldURI") != "item:DateTimeReceived":
        return _oldest_first(mails)
    ordered = _oldest_first(mails)
    return ordered if field_order.get("Order") != "Descending" else list(reversed(ordered))


def _oldest_first(mails: Iterable[StoredMail]) -> list[StoredMail]:
    return sorted(mails, key=lambda m: (m.received_at, m.seq))


def _copy(mail: StoredMail) -> StoredMail:
    return StoredMail(mail.item_id, mail.raw, mail.received_at, mail.is_read, mail.seq, mail.change)


def _headers(raw: bytes) -> dict[str, str]:
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    head = raw[: end if end >= 0 else 65536]
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    out: dict[str, str] = {}
    for key, value in parsed.raw_items():
        out.setdefault(key.lower(), " ".join(str(value).split()))
    return out


def _text(value: str) -> str:
    # XML 1.0 cannot carry most control characters, even escaped.
    cleaned = "".join(c for c in value if c in "\t\n\r" or ord(c) >= 0x20)
    return escape(cleaned.encode("utf-8", "replace").decode("utf-8"))


def _item_id(mail: StoredMail) -> str:
    return f"<t:ItemId Id={quoteattr(mail.item_id)} ChangeKey={quoteattr(mail.changekey)}/>"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _success(operation: str, body: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{body}</m:{operation}ResponseMessage>"
    )


def _error(operation: str, code: str, text: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}'
        f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{operation}ResponseMessage>"
    )


def _fault_xml(code: str, text: str, back_off_ms: int | None = None) -> str:
    extra = (
        f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{back_off_ms}'
        "</t:Value></t:MessageXml>"
        if back_off_ms is not None
        else ""
    )
    return (
        f'<s:Fault><faultcode xmlns:a="{T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(text)}</faultstring><detail>'
        f'<e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E}">{escape(text)}</e:Message>{extra}</detail></s:Fault>'
    )


def envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}"><s:Header>'
        f'<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" '
        f'MinorBuildNumber="6" Version="V2017_07_11" xmlns:h="{T}" xmlns="{T}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def operation_of(request_body: bytes) -> tuple[str, ET.Element | None]:
    """The operation name and element of a SOAP request ("?" when unreadable)."""
    try:
        root = ET.fromstring(request_body)
    except ET.ParseError:
        return "?", None
    body = root.find(f"{{{S}}}Body")
    if body is None or not len(body):
        return "?", None
    return _local(body[0].tag), body[0]


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    # Connection threads are joined by server_close(), after close_connections() ended them.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address, handler, ews: FakeEws, context: ssl.SSLContext | None):  # type: ignore[no-untyped-def]
        super().__init__(address, handler)
        self.ews = ews
        self.context = context
        self._open: set[socket.socket] = set()
        self.closing = False
        self._open_lock = threading.Lock()

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._open_lock:
            (self._open.add if add else self._open.discard)(sock)
            if add and self.closing:
                _shut(sock)

    def close_connections(self) -> None:
        with self._open_lock:
            self.closing = True
            for sock in list(self._open):
                _shut(sock)

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass  # a client that hangs up or refuses the certificate is no news here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def setup(self) -> None:
        # Headers and body go out in two writes: with Nagle, the second waits for the
        # client's delayed ACK (40 ms a request), which no real server makes it wait.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.context is not None:
            # Wrapping detaches the plain socket: track the TLS one, from before its handshake.
            self.request = self.server.context.wrap_socket(
                self.request, server_side=True, do_handshake_on_connect=False
            )
        self._tracked = self.request
        self.server.track(self._tracked, True)
        if self.server.context is not None:
            self.request.do_handshake()
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self._tracked, False)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        ews = self.server.ews
        if self.path.split("?")[0].lower() != PATH.lower():
            self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
            return
        operation, request = operation_of(body)
        with ews._lock:
            ews.requests.append(operation)
        authorized = ews._authorized(self.headers.get("Authorization"))
        fault = ews._take_fault(operation) if authorized else None
        if not authorized or (fault is not None and fault.kind == "unauthorized"):
            self._send(401, b"", "text/html", {"WWW-Authenticate": 'Basic realm="fake", Bearer'})
            return
        if fault is not None:
            self._fail(fault, operation, request)
            return
        if request is None:
            self._send(500, envelope(_fault_xml("ErrorSchemaValidation", "Unreadable request.")))
            return
        self._send(200, envelope(ews.answer(operation, request)))

    def do_GET(self) -> None:
        self._send(200, b"<html><body>Outlook on the web</body></html>", "text/html")

    def _fail(self, fault: Fault, operation: str, request: ET.Element | None) -> None:
        if fault.kind == "busy":
            text = "The server cannot service this request right now. Try again later."
            self._send(500, envelope(_fault_xml("ErrorServerBusy", text, fault.back_off_ms)))
        elif fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(
                fault.status, b"<html><body>Service Unavailable</body></html>", "text/html", extra
            )
        elif fault.kind == "html":
            self._send(200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html")
        elif fault.kind == "cut":
            full = (
                envelope(self.server.ews.answer(operation, request)) if request is not None else b""
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(full) + 100))
            self.end_headers()
            self.wfile.write(full[: max(len(full) // 2, 1)])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/xml; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
