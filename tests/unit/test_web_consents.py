"""OAuth consent from the admin page: the flow waits on its own thread for the browser's
return, which only the admin who started it can hand over; sign-in only sends to this site."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from services.oauth.consent import Authorized, Redirect
from services.runtime.errors import ConfigError
from services.web.consents import PendingConsents
from services.web.security import safe_next

AUTH_URL = "https://idp.example/authorize?client_id=c&state=s123&code_challenge=x"
DONE = Authorized("cloud", "user@example.test", datetime(2030, 1, 1, tzinfo=UTC), False)


def test_the_flow_gets_the_redirect_and_finish_returns_its_result() -> None:
    seen: list[str] = []

    def flow(redirect: Redirect) -> Authorized:
        seen.append(redirect(AUTH_URL))
        return DONE

    consents = PendingConsents()
    url = consents.start("cloud", "alice", flow)
    done = consents.finish("https://admin.example/oauth/callback?code=c1&state=s123", "alice")

    assert url == AUTH_URL and done == DONE
    assert seen == ["https://admin.example/oauth/callback?code=c1&state=s123"]


def test_a_second_return_with_the_same_state_is_refused() -> None:
    consents = PendingConsents()
    consents.start("cloud", "alice", lambda redirect: (redirect(AUTH_URL), DONE)[1])
    consents.finish("https://a/oauth/callback?code=c&state=s123", "alice")

    with pytest.raises(ConfigError, match="not under way"):
        consents.finish("https://a/oauth/callback?code=c&state=s123", "alice")


def test_another_admin_cannot_finish_the_consent() -> None:
    consents = PendingConsents(consent_seconds=5)
    consents.start("cloud", "alice", lambda redirect: (redirect(AUTH_URL), DONE)[1])

    with pytest.raises(ConfigError, match="another admin"):
        consents.finish("https://a/oauth/callback?code=c&state=s123", "bob")
    assert consents.finish("https://a/oauth/callback?code=c&state=s123", "alice") == DONE


def test_what_the_flow_raises_reaches_the_callback() -> None:
    def flow(redirect: Redirect) -> Authorized:
        redirect(AUTH_URL)
        raise ConfigError("mailbox 'cloud': consent was refused")

    consents = PendingConsents()
    consents.start("cloud", "alice", flow)

    with pytest.raises(ConfigError, match="consent was refused"):
        consents.finish("https://a/oauth/callback?error=access_denied&state=s123", "alice")


def test_a_flow_refused_before_its_url_is_raised_at_start() -> None:
    def flow(redirect: Redirect) -> Authorized:
        raise ConfigError("mailbox 'cloud': the redirect URL is not set")

    with pytest.raises(ConfigError, match="redirect URL is not set"):
        PendingConsents().start("cloud", "alice", flow)


def test_a_consent_not_given_in_time_ends_and_is_forgotten() -> None:
    ended = threading.Event()
    outcome: list[BaseException] = []

    def flow(redirect: Redirect) -> Authorized:
        try:
            redirect(AUTH_URL)
        except ConfigError as exc:
            outcome.append(exc)
            raise
        finally:
            ended.set()
        return DONE

    consents = PendingConsents(consent_seconds=0.2)
    consents.start("cloud", "alice", flow)

    assert ended.wait(10)
    assert "not given within" in str(outcome[0])
    with pytest.raises(ConfigError, match="not under way"):
        consents.finish("https://a/oauth/callback?code=c&state=s123", "alice")


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        ("/dlq", "/dlq"),
        ("/mailboxes/demo?x=1", "/mailboxes/demo?x=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_sign_in_only_a_path_on_this_site_is_followed(
    asked: str | None, goes_to: str
) -> None:
    assert safe_next(asked) == goes_to
