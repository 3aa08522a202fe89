"""Microsoft Graph and EWS: Mailroom's sources vs the bare libraries, on the same mailbox.

Each protocol's fake (``tests/graph_server.py``, ``tests/ews_server.py``) serves the
generated mixed mailbox over TLS on loopback, in this process. Mailroom's source does what a
poller round does (``list_new`` a batch, ``fetch_many`` it, ``mark_handed_off`` it, until
nothing is new) but stores and publishes nothing; the baseline does the least the protocol
needs to download every unread mail and mark it read: plain ``requests`` for Graph, plain
exchangelib for EWS. Each run gets a fresh fake holding the same unread mailbox.

The fakes run in this process, so their own work (TLS, XML, JSON) is in every figure, on
both sides alike: the ratios say more than the absolute rates.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import requests
from exchangelib import BASIC, DELEGATE, Account, Build, Configuration, Credentials, Version
from exchangelib.protocol import BaseProtocol

from bench.imap import MB, Transfer
from bench.mailgen import MIXED_TO, make_mixed_mail
from bench.procs import REPO
from bench.report import Figure, Results
from contracts.settings import MailboxSettings
from services.poller.rounds import BATCH
from services.poller.sources import open_source
from services.poller.sources.base import MailSource
from services.poller.sources.ews_protocol import forget_protocol
from services.poller.sources.graph import PAGE_SIZE, UNREAD_OLDEST_FIRST
from services.poller.sources.needs import SourceNeeds
from services.poller.sources.tokens import StaticTokenProvider

sys.path.insert(0, str(REPO / "tests"))
from ews_server import FakeEws  # noqa: E402  (tests/ is not a package)
from graph_server import GraphServer  # noqa: E402

PASSWORD = "bench-secret"
TOKEN = "bench-graph-token"
Fake = TypeVar("Fake", GraphServer, FakeEws)

GRAPH_BASELINE = (
    f"bare requests, one session: list unread ({PAGE_SIZE} a page, following "
    "@odata.nextLink), GET $value and PATCH isRead of each"
)
EWS_BASELINE = (
    "bare exchangelib, pinned version and auth: filter(is_read=False).only('mime_content') "
    "over all, then bulk_update is_read"
)


def measure(workdir: Path, count: int, results: Results) -> None:
    """Fetch and mark ``count`` mixed mails through each fake, with Mailroom then bare."""
    raws = [make_mixed_mail(i) for i in range(count)]
    size = sum(map(len, raws))
    details: dict[str, Any] = {"mails": count, "bytes": size}

    def graph() -> GraphServer:
        return GraphServer(workdir / "graph", username=MIXED_TO, tokens={TOKEN})

    def ews() -> FakeEws:
        return FakeEws(workdir / "ews", users={MIXED_TO: PASSWORD})

    for name, fake, mailroom, bare, baseline in (
        ("graph", graph, graph_mailroom, graph_bare, GRAPH_BASELINE),
        ("ews", ews, ews_mailroom, ews_bare, EWS_BASELINE),
    ):
        ours, theirs = _run(fake, raws, mailroom), _run(fake, raws, bare)
        results.figures.append(
            Figure(
                f"{name}: mails/s, poller's source (list, fetch, mark read; nothing stored)",
                baseline,
                "mails/s",
                ours.per_second if isinstance(ours, Transfer) else None,
                theirs.per_second if isinstance(theirs, Transfer) else None,
            )
        )
        results.notes += _notes(name, count, size, ours, theirs)
        details[name] = {
            "mailroom": asdict(ours) if isinstance(ours, Transfer) else ours,
            "baseline": asdict(theirs) if isinstance(theirs, Transfer) else theirs,
        }
    results.details["exchange"] = details


def _run(
    make: Callable[[], Fake], raws: list[bytes], client: Callable[[Fake], Transfer]
) -> Transfer | str:
    """``client`` against a fresh fake holding ``raws``, unread; the error's text if it fails."""
    with make() as fake:  # stopped, its threads joined, even when the client fails
        for raw in raws:
            fake.deliver(raw)
        try:
            return client(fake)
        except Exception:
            return traceback.format_exc(limit=-3)


def _notes(
    name: str, count: int, size: int, ours: Transfer | str, theirs: Transfer | str
) -> list[str]:
    notes = [
        f"{name}: mailbox of {count} mails, {size / MB:,.1f} MB; "
        f"Mailroom {_said(ours)}; baseline {_said(theirs)}"
    ]
    for side, got in (("Mailroom", ours), ("baseline", theirs)):
        if isinstance(got, str):
            notes.append(f"PROBLEM: {name} {side} run failed:\n{got}")
        elif got.mails != count:
            notes.append(f"PROBLEM: {name} {side} fetched {got.mails} of {count} mails")
    return notes


def _said(run: Transfer | str) -> str:
    if isinstance(run, str):
        return "failed"
    return f"fetched {run.mails} ({run.size / MB:,.1f} MB) in {run.seconds:.2f} s"


# -- Mailroom ------------------------------------------------------------------------------


def graph_mailroom(graph: GraphServer) -> Transfer:
    box = _mailbox(
        protocol="graph",
        auth="oauth",
        client_id="mailroom-bench",
        token_url="https://login.example.test/bench/oauth2/v2.0/token",
        graph_endpoint=graph.endpoint,
        tls={"ca_file": str(graph.ca_file)},
    )
    return _poll(box, SourceNeeds.plain(box, tokens=StaticTokenProvider(TOKEN)))


def ews_mailroom(ews: FakeEws) -> Transfer:
    box = _mailbox(
        protocol="ews",
        connect_url=ews.url,
        password=PASSWORD,
        tls={"ca_file": str(ews.ca_file)},
    )
    return _poll(box, SourceNeeds.plain(box))


def _mailbox(**fields: Any) -> MailboxSettings:
    common = {"name": "bench-exchange", "username": MIXED_TO, "timeout_seconds": 30}
    return MailboxSettings.model_validate(common | fields)


def _poll(box: MailboxSettings, needs: SourceNeeds) -> Transfer:
    """What a poller round asks of its source, batch by batch, timed from opening it."""
    start = time.perf_counter()
    source = open_source(box, None, needs)  # type: ignore[arg-type]  # these keep no state
    try:
        mails, size = _rounds(source)
    finally:
        source.close()
    return Transfer(mails, size, time.perf_counter() - start)


def _rounds(source: MailSource) -> tuple[int, int]:
    # A mail listed again after its marking (it did not take) is not taken twice, as in a round.
    taken: set[str] = set()
    mails = size = 0
    while refs := [ref for ref in source.list_new(BATCH) if ref not in taken]:
        taken.update(refs)
        raws = [item.raw for item in source.fetch_many(refs) if item.raw is not None]
        source.mark_handed_off(refs)
        mails, size = mails + len(raws), size + sum(map(len, raws))
    return mails, size


# -- baselines -----------------------------------------------------------------------------


def graph_bare(graph: GraphServer) -> Transfer:
    """Every unread inbox mail's bytes, then each marked read: the least Graph needs.

    Every id is listed before any is marked: marking shrinks the unread view under the
    pages still to come.
    """
    start = time.perf_counter()
    user = f"{graph.endpoint}/v1.0/users/{MIXED_TO}"
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = str(graph.ca_file)
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        ids: list[str] = []
        params: dict[str, str] | None = UNREAD_OLDEST_FIRST | {
            "$top": str(PAGE_SIZE),
            "$select": "id",
        }
        url: str | None = f"{user}/mailFolders/inbox/messages"
        while url:
            page = session.get(url, params=params, timeout=30)
            page.raise_for_status()
            body = page.json()
            ids += [m["id"] for m in body["value"]]
            url, params = body.get("@odata.nextLink"), None
        size = 0
        for mail_id in ids:
            raw = session.get(f"{user}/messages/{mail_id}/$value", timeout=30)
            raw.raise_for_status()
            size += len(raw.content)
            session.patch(
                f"{user}/messages/{mail_id}", json={"isRead": True}, timeout=30
            ).raise_for_status()
    return Transfer(len(ids), size, time.perf_counter() - start)


def ews_bare(ews: FakeEws) -> Transfer:
    """Every unread inbox mail's MIME content in one query, then all marked read in bulk."""
    start = time.perf_counter()
    config = Configuration(
        service_endpoint=ews.url,
        credentials=Credentials(MIXED_TO, PASSWORD),
        auth_type=BASIC,
        version=Version(build=Build(15, 1)),
    )
    with ExitStack() as stack:
        stack.enter_context(_TrustingCa(ews.ca_file))
        stack.callback(forget_protocol, config)
        account = Account(MIXED_TO, config=config, autodiscover=False, access_type=DELEGATE)
        query = account.inbox.filter(is_read=False).order_by("datetime_received")
        items, size = [], 0
        for item in query.only("mime_content"):
            size += len(item.mime_content)
            item.is_read = True
            items.append(item)
        for result in account.bulk_update(items=[(item, ["is_read"]) for item in items]):
            if isinstance(result, Exception):
                raise result
    return Transfer(len(items), size, time.perf_counter() - start)


class _TrustingCa:
    """exchangelib's documented way to trust a private CA: its HTTP adapter class, which is
    process-wide, so it is put back after."""

    def __init__(self, ca_file: Path) -> None:
        self._ca = str(ca_file)
        self._before = BaseProtocol.HTTP_ADAPTER_CLS

    def __enter__(self) -> None:
        ca = self._ca

        class Adapter(requests.adapters.HTTPAdapter):
            def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
                super().cert_verify(conn, url, ca, cert)

        BaseProtocol.HTTP_ADAPTER_CLS = Adapter

    def __exit__(self, *exc: object) -> None:
        BaseProtocol.HTTP_ADAPTER_CLS = self._before
