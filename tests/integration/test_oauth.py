"""OAuth for mailboxes against the fake authorization server over TLS: consent (a test
browser follows the authorization URL), stored tokens, refresh, and what goes wrong."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from oauth_server import OAuthServer
from servers import free_port

from contracts.settings import HelpdeskSettings, MailboxSettings, SettingsFile
from services.oauth.clients import client_for
from services.oauth.consent import PAUSED_FOR_REAUTHORIZATION, Redirect, authorize
from services.oauth.microsoft import MicrosoftClient
from services.oauth.redirect import LoopbackListener
from services.oauth.token_store import SqlTokenStore
from services.oauth.wiring import stored_tokens_for
from services.poller.sources.http import http_session
from services.poller.sources.tokens import ReauthorizeNeeded
from services.runtime import tables
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.store import Store
from services.runtime.testing import FakeClock

USER = "help@example.test"
MS_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
#: Zoho separates scopes with commas: they must reach the server as written.
ZOHO_SCOPE = "ZohoMail.messages.ALL,ZohoMail.accounts.READ"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OAuthServer]:
    server = OAuthServer.start(tmp_path / "idp", account=USER)
    yield server
    server.stop()


@pytest.fixture
def secret_box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    migrated = Store(f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}")
    migrated.migrate()
    return migrated


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def mailbox(idp: OAuthServer, kind: str = "microsoft", **changes: Any) -> MailboxSettings:
    if kind == "microsoft":
        urls = {"token_url": idp.token_url(), "authorization_url": idp.authorization_url()}
        scope = MS_SCOPE
    else:
        urls = {
            "token_url": idp.generic_token_url,
            "authorization_url": idp.generic_authorization_url,
        }
        scope = ZOHO_SCOPE
    fields: dict[str, Any] = {
        "name": "support",
        "protocol": "imaps",
        "host": "localhost",
        "username": USER,
        "auth": "oauth",
        "client_id": "mailroom",
        "client_secret": "client-secret",
        "scope": scope,
        "redirect_url": f"http://localhost:{free_port()}/callback",
        "tls": {"ca_file": str(idp.ca_file)},
        "timeout_seconds": 5,
        **urls,
        **changes,
    }
    return MailboxSettings.model_validate(fields)


def configured(store: Store, secret_box: SecretBox, box: MailboxSettings) -> MailboxSettings:
    ConfigStore(store, secret_box).apply(
        SettingsFile(helpdesks=[HelpdeskSettings(id="desk", mailboxes=[box])])
    )
    return box


def browse(idp: OAuthServer, url: str) -> str:
    """What a browser does: open the authorization URL; returns where it is sent back to."""
    with requests.Session() as browser:
        browser.trust_env = False
        answer = browser.get(url, verify=str(idp.ca_file), allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def pasting(idp: OAuthServer) -> Redirect:
    """The admin opens the URL and pastes the address the browser ended on."""
    return lambda url: browse(idp, url)


def listening(
    idp: OAuthServer, box: MailboxSettings, page_says: str = "Authorization received"
) -> Redirect:
    """The listener on the redirect URL, and a browser that is sent to it."""

    def redirect(url: str) -> str:
        listener = LoopbackListener(box, box.redirect_url or "")
        failures: list[BaseException] = []

        def browser() -> None:
            try:
                with requests.Session() as session:
                    session.trust_env = False
                    page = session.get(browse(idp, url), timeout=5)
                assert page.status_code == 200 and page_says in page.text
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failures.append(exc)

        thread = threading.Thread(target=browser)
        thread.start()
        try:
            return listener.wait(10)
        finally:
            thread.join()
            listener.close()
            assert not failures, failures

    return redirect


def run_authorize(
    store: Store,
    secret_box: SecretBox,
    clock: FakeClock,
    box: MailboxSettings,
    redirect: Redirect,
    paused_reason: str | None = None,
):  # type: ignore[no-untyped-def]
    return authorize(
        box,
        client_for(box, http_session, clock),
        redirect,
        SqlTokenStore(store, secret_box),
        MailboxHealth(store),
        clock,
        paused_reason=paused_reason,
    )


def provider_for(store: Store, secret_box: SecretBox, clock: FakeClock, box: MailboxSettings):  # type: ignore[no-untyped-def]
    provider = stored_tokens_for(store, secret_box, clock, http_session)(box)
    assert provider is not None
    return provider


# -- consent -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
@pytest.mark.parametrize("receive", ["listener", "paste"])
def test_authorize_stores_the_tokens_of_the_consenting_account(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str, receive: str
) -> None:
    box = configured(store, secret_box, mailbox(idp, kind))
    redirect = listening(idp, box) if receive == "listener" else pasting(idp)

    done = run_authorize(store, secret_box, clock, box, redirect)

    stored = SqlTokenStore(store, secret_box).get("support")
    assert stored is not None
    assert done.account == USER and stored.account == USER
    assert stored.refresh_token in idp.refresh_tokens
    assert stored.access_token == idp.issued_access_tokens[-1]
    assert done.access_expires_at == clock.now() + timedelta(seconds=3600)
    assert provider_for(store, secret_box, clock, box).access_token() == stored.access_token
    exchange = idp.token_requests("authorization_code")
    assert len(exchange) == 1


def test_the_generic_client_sends_the_scope_as_written_and_asks_for_offline_access(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp, "generic"))

    run_authorize(store, secret_box, clock, box, pasting(idp))

    (asked,) = [r for r in idp.log if r.path == "/authorize"]
    assert asked.params["scope"] == ZOHO_SCOPE
    assert asked.params["access_type"] == "offline" and asked.params["prompt"] == "consent"
    assert asked.params["code_challenge_method"] == "S256"
    assert idp.token_requests("authorization_code")[0].client_auth == "body"


def test_msal_leaves_out_the_reserved_scopes_and_works_as_a_public_client(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    idp.clients["public-app"] = None
    box = configured(store, secret_box, mailbox(idp, client_id="public-app", client_secret=None))

    done = run_authorize(store, secret_box, clock, box, pasting(idp))

    assert done.account == USER
    (asked,) = [r for r in idp.log if r.path.endswith("/authorize")]
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in asked.params["scope"].split()


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
def test_consent_by_another_account_is_refused_and_nothing_is_stored(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str
) -> None:
    box = configured(store, secret_box, mailbox(idp, kind))
    idp.account = "Someone.Else@example.test"

    with pytest.raises(ConfigError) as refused:
        run_authorize(store, secret_box, clock, box, pasting(idp))

    assert "'Someone.Else@example.test' gave consent" in str(refused.value)
    assert repr(USER) in str(refused.value) and "nothing was stored" in str(refused.value)
    assert SqlTokenStore(store, secret_box).get("support") is None


def test_the_account_is_compared_without_case(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))
    idp.account = USER.upper()

    done = run_authorize(store, secret_box, clock, box, pasting(idp))

    assert done.account == USER.upper()


def test_refused_consent_says_so(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))
    idp.consent = "deny"

    with pytest.raises(ConfigError, match="consent was refused.*access_denied"):
        run_authorize(store, secret_box, clock, box, listening(idp, box, "refused"))

    assert SqlTokenStore(store, secret_box).get("support") is None


def test_a_redirect_of_another_authorization_is_refused(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp, "generic"))
    other = browse(idp, client_for(box, http_session, clock).begin().url)

    with pytest.raises(ConfigError, match="state differs"):
        run_authorize(store, secret_box, clock, box, lambda url: other)


def test_the_listener_gives_up_after_its_timeout(idp: OAuthServer) -> None:
    box = mailbox(idp)
    listener = LoopbackListener(box, box.redirect_url or "")

    with pytest.raises(ConfigError, match="no browser came back .* within 0.2 seconds"):
        listener.wait(0.2)


def test_authorizing_resumes_a_mailbox_paused_for_re_authorization(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))
    reason = PAUSED_FOR_REAUTHORIZATION.format(name="support")
    MailboxHealth(store).pause("support", reason)

    done = run_authorize(store, secret_box, clock, box, pasting(idp), paused_reason=reason)

    assert done.resumed
    assert ConfigStore(store, secret_box).mailbox("support").enabled


# -- stored tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
def test_the_access_token_is_reused_while_valid_then_refreshed_and_the_rotation_kept(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str
) -> None:
    box = configured(store, secret_box, mailbox(idp, kind))
    run_authorize(store, secret_box, clock, box, pasting(idp))
    tokens = SqlTokenStore(store, secret_box)
    first = tokens.get("support")
    assert first is not None
    provider = provider_for(store, secret_box, clock, box)

    clock.advance(minutes=50)
    reused = provider.access_token()
    clock.advance(minutes=6)  # 4 minutes left: refreshed first
    refreshed = provider.access_token()
    after_one = tokens.get("support")
    clock.advance(minutes=60)
    again = provider.access_token()  # works only with the rotated refresh token
    after_two = tokens.get("support")

    assert reused == first.access_token
    assert refreshed != first.access_token and refreshed == idp.issued_access_tokens[1]
    assert again == idp.issued_access_tokens[2]
    assert after_one is not None and after_two is not None
    assert after_one.refresh_token != first.refresh_token
    assert after_two.refresh_token in idp.refresh_tokens
    assert after_two.refresh_used_at == clock.now()
    assert after_two.refresh_issued_at == clock.now()
    assert after_two.access_expires_at == clock.now() + timedelta(hours=1)
    assert len(idp.token_requests("refresh_token")) == 2


def test_refreshed_token_asks_the_server_even_while_the_token_is_valid(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))
    run_authorize(store, secret_box, clock, box, pasting(idp))
    provider = provider_for(store, secret_box, clock, box)

    token = provider.refreshed_token()

    assert token == idp.issued_access_tokens[-1] and len(idp.issued_access_tokens) == 2


def test_tokens_of_another_account_than_username_ask_for_re_authorization(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))
    run_authorize(store, secret_box, clock, box, pasting(idp))
    renamed = configured(store, secret_box, mailbox(idp, username="other@example.test"))

    with pytest.raises(ReauthorizeNeeded, match=f"granted by {USER!r}.*'other@example.test'"):
        provider_for(store, secret_box, clock, renamed).access_token()


def test_no_provider_before_authorization(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))

    assert stored_tokens_for(store, secret_box, clock, http_session)(box) is None


def test_tokens_are_stored_encrypted(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = configured(store, secret_box, mailbox(idp))
    run_authorize(store, secret_box, clock, box, pasting(idp))
    stored = SqlTokenStore(store, secret_box).get("support")
    assert stored is not None

    with store.transaction() as conn:
        row = conn.execute(sa.select(tables.oauth_tokens)).one()
    raw = " ".join(str(v) for v in row)
    database = (Path(store.engine.url.database or "")).read_bytes()

    assert stored.access_token not in raw and stored.refresh_token not in raw
    assert stored.refresh_token.encode() not in database
    assert stored.access_token not in repr(stored)


# -- what goes wrong -----------------------------------------------------------------------


def authorized_then(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str,
    change: Callable[[], None],
) -> tuple[Any, MailboxSettings]:  # fmt: skip
    box = configured(store, secret_box, mailbox(idp, kind))
    run_authorize(store, secret_box, clock, box, pasting(idp))
    change()
    clock.advance(hours=2)  # the access token has expired
    return provider_for(store, secret_box, clock, box), box


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
def test_a_revoked_refresh_token_asks_for_re_authorization(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str
) -> None:
    provider, _ = authorized_then(idp, store, secret_box, clock, kind, idp.revoke_refresh_tokens)

    with pytest.raises(ReauthorizeNeeded) as refused:
        provider.access_token()

    said = str(refused.value)
    assert said.startswith("mailbox 'support': ")
    assert "invalid_grant" in said and "`mailroom oauth authorize support`" in said
    stored = SqlTokenStore(store, secret_box).get("support")
    assert stored is not None and stored.last_failure == said
    assert stored.last_failure_at == clock.now()


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
def test_an_expired_client_secret_asks_to_check_the_client(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str
) -> None:
    provider, _ = authorized_then(
        idp, store, secret_box, clock, kind, lambda: idp.clients.update(mailroom="new-secret")
    )

    with pytest.raises(ReauthorizeNeeded) as refused:
        provider.access_token()

    said = str(refused.value)
    assert "invalid_client" in said and "`client_secret`" in said and "expired" in said
    assert "client-secret" not in said and "new-secret" not in said


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
def test_a_token_endpoint_answering_html_names_token_url(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str
) -> None:
    provider, _ = authorized_then(
        idp, store, secret_box, clock, kind, lambda: setattr(idp, "fault", "html")
    )

    with pytest.raises(ConfigError) as refused:
        provider.access_token()

    assert not isinstance(refused.value, ReauthorizeNeeded)
    assert "text/html instead of an OAuth answer in JSON: check `token_url`" in str(refused.value)


def test_a_wrong_tenant_is_named(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = mailbox(idp, token_url=idp.token_url("fabrikam"))

    with pytest.raises(ConfigError) as refused:
        MicrosoftClient(box, http_session(box), clock).refresh("rt-whatever")

    assert "does not know tenant 'fabrikam'" in str(refused.value)
    assert "`token_url`" in str(refused.value)


def test_a_wrong_tenant_on_a_generic_token_url_is_named(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    # A tenant's token endpoint of another shape than msal's: its 404 names the tenant.
    box = mailbox(idp, "generic", token_url=f"{idp.base_url}/fabrikam/oauth2/token")

    with pytest.raises(ConfigError, match="does not know tenant 'fabrikam'"):
        client_for(box, http_session, clock).refresh("rt-whatever")


def test_a_token_url_the_server_does_not_have_is_named(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = mailbox(idp, "generic", token_url=f"{idp.base_url}/oauth/token")

    with pytest.raises(ConfigError, match="answered HTTP 404 .*: check `token_url`"):
        client_for(box, http_session, clock).refresh("rt-whatever")


@pytest.mark.parametrize("kind", ["microsoft", "generic"])
def test_an_unreachable_authorization_server_passes(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock, kind: str
) -> None:
    port = free_port()
    url = (
        f"https://localhost:{port}/contoso/oauth2/v2.0/token"
        if kind == "microsoft"
        else f"https://localhost:{port}/token"
    )
    box = mailbox(idp, kind, token_url=url)

    with pytest.raises(
        InfraError, match=f"the authorization server localhost:{port} cannot be reached"
    ):
        client_for(box, http_session, clock).refresh("rt-whatever")


def test_an_untrusted_certificate_names_tls_ca_file(
    idp: OAuthServer, store: Store, secret_box: SecretBox, clock: FakeClock
) -> None:
    box = mailbox(idp, tls={})

    with pytest.raises(ConfigError, match="certificate check.*`tls.ca_file`"):
        client_for(box, http_session, clock).refresh("rt-whatever")
