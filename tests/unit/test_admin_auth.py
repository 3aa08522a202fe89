"""The admin login behind the web page: users and passwords, sessions, CSRF tokens, the
login limiter and the audit log, on SQLite and PostgreSQL; and ``admin create-user``."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, extract_parameters
from click.testing import CliRunner
from cryptography.fernet import Fernet

from services.cli.admin_users import create_user
from services.runtime import tables
from services.runtime.errors import ConfigError
from services.runtime.store import Store
from services.runtime.testing import FakeClock
from services.web.audit import AuditLog
from services.web.login_limit import LoginLimiter
from services.web.passwords import AdminUsers
from services.web.sessions import Sessions, csrf_ok

PASSWORD = "correct horse battery"


def cheap_hasher(time_cost: int = 1) -> PasswordHasher:
    """argon2 with small parameters: the tests check behaviour, not strength."""
    return PasswordHasher(time_cost=time_cost, memory_cost=1024, parallelism=1)


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # noqa: A002
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def users(store: Store, clock: FakeClock) -> AdminUsers:
    return AdminUsers(store, clock, cheap_hasher())


def rows(store: Store, table: sa.Table) -> list[sa.Row[tuple[object, ...]]]:
    with store.transaction() as conn:
        return list(conn.execute(sa.select(table)).all())


# --- users and passwords -------------------------------------------------------------------


def test_a_created_user_logs_in_with_their_password_and_any_case_of_their_name(
    users: AdminUsers,
) -> None:
    assert not users.exists_any()

    users.create("Alice", PASSWORD)

    assert users.exists_any()
    assert users.verify("alice", PASSWORD)
    assert users.verify("ALICE", PASSWORD)
    assert not users.verify("alice", PASSWORD.upper())
    assert not users.verify("alice", "")


def test_an_unknown_user_is_refused_at_the_cost_of_one_hash(store: Store, clock: FakeClock) -> None:
    hasher = CountingHasher()
    users = AdminUsers(store, clock, hasher)
    users.create("alice", PASSWORD)
    hasher.verified = 0

    assert not users.verify("mallory", PASSWORD)
    assert not users.verify("x" * 10_000, PASSWORD)
    assert hasher.verified == 2

    assert users.verify("alice", PASSWORD)
    assert not users.verify("alice", "y" * 100_000)
    assert hasher.verified == 4


def test_the_password_is_kept_only_as_an_argon2_hash(store: Store, users: AdminUsers) -> None:
    users.create("alice", PASSWORD)

    (row,) = rows(store, tables.admin_users)

    assert row.username == "alice"
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("a" * 101, "longer than 100 characters"),
        ("bob\x1b[2J", "control or invisible characters"),
        ("evil\u202etxt", "control or invisible characters"),
        ("zero\u200bwidth", "control or invisible characters"),
    ],
)
def test_an_unusable_name_is_refused_with_what_to_change(
    store: Store, users: AdminUsers, name: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        users.create(name, PASSWORD)
    assert rows(store, tables.admin_users) == []


def test_a_name_of_100_characters_is_taken(users: AdminUsers) -> None:
    users.create("a" * 100, PASSWORD)
    assert users.verify("A" * 100, PASSWORD)


def test_a_taken_name_is_refused_in_any_case_and_the_first_password_stays(
    users: AdminUsers,
) -> None:
    users.create("alice", PASSWORD)

    with pytest.raises(ConfigError, match="admin user alice exists already: choose another"):
        users.create("ALICE", "another long password")

    assert users.verify("alice", PASSWORD)
    assert not users.verify("alice", "another long password")


@pytest.mark.parametrize(
    ("password", "says"),
    [("", "shorter than 12"), ("elevenchars", "shorter than 12"), ("p" * 1025, "longer than 1024")],
)
def test_a_password_too_short_or_too_long_is_refused(
    store: Store, users: AdminUsers, password: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        users.create("alice", password)

    assert rows(store, tables.admin_users) == []


def test_a_password_of_12_and_of_1024_characters_is_taken(users: AdminUsers) -> None:
    users.create("short", "twelve chars")
    users.create("long", "p" * 1024)

    assert users.verify("short", "twelve chars")
    assert users.verify("long", "p" * 1024)


def test_a_hash_made_with_older_parameters_is_renewed_at_the_next_login(
    store: Store, clock: FakeClock
) -> None:
    AdminUsers(store, clock, cheap_hasher(time_cost=1)).create("alice", PASSWORD)
    stronger = AdminUsers(store, clock, cheap_hasher(time_cost=2))

    assert not stronger.verify("alice", "not the password")
    assert extract_parameters(rows(store, tables.admin_users)[0].password_hash).time_cost == 1

    assert stronger.verify("alice", PASSWORD)
    renewed = rows(store, tables.admin_users)[0].password_hash
    assert extract_parameters(renewed).time_cost == 2
    assert stronger.verify("alice", PASSWORD)
    assert AdminUsers(store, clock, cheap_hasher(time_cost=1)).verify("alice", PASSWORD)


def test_a_new_password_replaces_the_old_and_ends_the_users_sessions(
    store: Store, clock: FakeClock, users: AdminUsers
) -> None:
    users.create("alice", PASSWORD)
    users.create("bob", PASSWORD)
    sessions = Sessions(store, clock)
    alices, bobs = sessions.start("alice"), sessions.start("bob")
    clock.advance(minutes=1)

    users.set_password("Alice", "a brand new password")

    assert users.verify("alice", "a brand new password")
    assert not users.verify("alice", PASSWORD)
    assert sessions.current(alices.token) is None
    assert sessions.current(bobs.token) is not None
    (alice,) = [row for row in rows(store, tables.admin_users) if row.username == "alice"]
    assert alice.password_changed_at > alice.created_at


def test_a_new_password_for_an_unknown_user_or_too_short_is_refused(users: AdminUsers) -> None:
    users.create("alice", PASSWORD)

    with pytest.raises(ConfigError, match="no admin user bob"):
        users.set_password("bob", "a brand new password")
    with pytest.raises(ConfigError, match="shorter than 12"):
        users.set_password("alice", "short")

    assert users.verify("alice", PASSWORD)


# --- sessions --------------------------------------------------------------------------------


@pytest.fixture
def sessions(store: Store, clock: FakeClock, users: AdminUsers) -> Sessions:
    users.create("alice", PASSWORD)
    return Sessions(store, clock, lifetime=timedelta(hours=8), idle=timedelta(minutes=30))


def test_a_started_session_is_found_by_its_token_with_its_user_and_csrf_token(
    sessions: Sessions, clock: FakeClock
) -> None:
    new = sessions.start("Alice")

    found = sessions.current(new.token)

    assert found is not None
    assert found.username == "alice"
    assert found.csrf == new.csrf
    assert found.expires_at == new.expires_at == clock.now() + timedelta(hours=8)
    assert sessions.current(new.token + "x") is None
    assert sessions.current("") is None


def test_each_session_has_tokens_of_its_own(sessions: Sessions) -> None:
    one, other = sessions.start("alice"), sessions.start("alice")

    assert len({one.token, other.token, one.csrf, other.csrf}) == 4
    assert len(one.token) >= 43  # 32 random bytes


def test_a_session_left_idle_expires_and_is_deleted(
    store: Store, sessions: Sessions, clock: FakeClock
) -> None:
    new = sessions.start("alice")
    clock.advance(minutes=29, seconds=59)
    assert sessions.current(new.token) is not None  # used: idle again from here

    clock.advance(minutes=30)

    assert sessions.current(new.token) is None
    assert rows(store, tables.admin_sessions) == []


def test_using_a_session_holds_off_its_idle_end_but_not_its_lifetime(
    store: Store, sessions: Sessions, clock: FakeClock
) -> None:
    new = sessions.start("alice")
    for _ in range(16):  # used every 29 minutes: never idle for 30
        clock.advance(minutes=29)
        assert sessions.current(new.token) is not None
    clock.advance(minutes=15)
    assert sessions.current(new.token) is not None  # 7 h 59 min after it started

    clock.advance(minutes=1)  # 8 hours after it started

    assert sessions.current(new.token) is None
    assert rows(store, tables.admin_sessions) == []


def test_an_ended_session_is_gone_and_the_others_stay(sessions: Sessions) -> None:
    one, other = sessions.start("alice"), sessions.start("alice")

    sessions.end(one.token)

    assert sessions.current(one.token) is None
    assert sessions.current(other.token) is not None
    sessions.end(one.token)  # again: nothing to do


def test_ending_all_sessions_of_a_user_leaves_other_users_logged_in(
    sessions: Sessions, users: AdminUsers
) -> None:
    users.create("bob", PASSWORD)
    alices = [sessions.start("alice"), sessions.start("alice")]
    bobs = sessions.start("bob")

    sessions.end_all("ALICE")

    assert [sessions.current(s.token) for s in alices] == [None, None]
    assert sessions.current(bobs.token) is not None


def test_the_session_token_is_stored_only_as_its_hash(store: Store, sessions: Sessions) -> None:
    new = sessions.start("alice")

    (row,) = rows(store, tables.admin_sessions)

    assert row.token_sha256 == hashlib.sha256(new.token.encode()).hexdigest()
    assert all(new.token not in str(value) for value in row)
    assert new.token not in repr(new)
    assert new.csrf not in repr(new) + repr(sessions.current(new.token))


def test_expired_sessions_of_anyone_are_deleted_when_a_session_starts(
    store: Store, sessions: Sessions, clock: FakeClock
) -> None:
    for _ in range(3):
        sessions.start("alice")
    clock.advance(hours=1)

    kept = sessions.start("alice")

    assert [row.token_sha256 for row in rows(store, tables.admin_sessions)] == [
        hashlib.sha256(kept.token.encode()).hexdigest()
    ]


def test_the_csrf_token_of_the_session_is_accepted_and_any_other_refused(
    sessions: Sessions,
) -> None:
    new, other = sessions.start("alice"), sessions.start("alice")
    session = sessions.current(new.token)
    assert session is not None

    assert csrf_ok(session, new.csrf)
    assert not csrf_ok(session, other.csrf)
    assert not csrf_ok(session, new.csrf[:-1])
    assert not csrf_ok(session, new.csrf + "A")
    assert not csrf_ok(session, "")
    assert not csrf_ok(session, None)
    assert not csrf_ok(session, "é" * 43)
    assert not csrf_ok(session, new.token)


# --- the login limiter -----------------------------------------------------------------------


@pytest.fixture
def limiter(store: Store, clock: FakeClock) -> LoginLimiter:
    return LoginLimiter(store, clock, max_failures=5, window=timedelta(minutes=15))


def fail(limiter: LoginLimiter, clock: FakeClock, times: int, user: str, ip: str) -> None:
    for _ in range(times):
        assert limiter.wait_seconds(user, ip) == 0
        limiter.failed(user, ip)
        clock.advance(minutes=1)


def test_the_sixth_try_for_one_name_waits_whatever_the_address(
    limiter: LoginLimiter, clock: FakeClock
) -> None:
    for i in range(5):
        assert limiter.wait_seconds("alice", f"10.0.0.{i}") == 0
        limiter.failed("Alice", f"10.0.0.{i}")
        clock.advance(minutes=1)

    # The first failure leaves the window 15 minutes after it was made: in 10 minutes.
    assert limiter.wait_seconds("ALICE", "10.9.9.9") == 10 * 60
    assert limiter.wait_seconds("bob", "10.9.9.9") == 0


def test_the_sixth_try_from_one_address_waits_whatever_the_name(
    limiter: LoginLimiter, clock: FakeClock
) -> None:
    for i in range(5):
        limiter.failed(f"user{i}", "2001:db8::1")
        clock.advance(seconds=30)

    assert limiter.wait_seconds("someone-else", "2001:db8::1") == 15 * 60 - 5 * 30
    assert limiter.wait_seconds("someone-else", "2001:db8::2") == 0


def test_the_window_slides_one_failure_at_a_time(limiter: LoginLimiter, clock: FakeClock) -> None:
    fail(limiter, clock, 5, "alice", "10.0.0.1")  # at minutes 0 to 4; now minute 5
    waiting = limiter.wait_seconds("alice", "10.0.0.1")
    assert waiting == 10 * 60

    clock.advance(seconds=waiting)  # the first failure left the window
    assert limiter.wait_seconds("alice", "10.0.0.1") == 0
    limiter.failed("alice", "10.0.0.1")
    # Five in the window again: the oldest of them (minute 1) leaves it at minute 16.
    assert limiter.wait_seconds("alice", "10.0.0.1") == 60

    clock.advance(minutes=1)
    assert limiter.wait_seconds("alice", "10.0.0.1") == 0


def test_failures_spread_wider_than_the_window_never_make_one_wait(
    limiter: LoginLimiter, clock: FakeClock
) -> None:
    for _ in range(20):
        assert limiter.wait_seconds("alice", "10.0.0.1") == 0
        limiter.failed("alice", "10.0.0.1")
        clock.advance(minutes=4)


def test_a_success_forgives_the_names_failures_but_not_the_addresss(
    limiter: LoginLimiter, clock: FakeClock
) -> None:
    fail(limiter, clock, 4, "alice", "10.0.0.1")
    limiter.succeeded("Alice", "10.0.0.1")

    fail(limiter, clock, 4, "alice", "10.0.0.2")  # four new ones: not yet five
    assert limiter.wait_seconds("alice", "10.0.0.3") == 0

    limiter.failed("carol", "10.0.0.1")  # the address's fifth
    assert limiter.wait_seconds("dave", "10.0.0.1") > 0
    limiter.succeeded("carol", "10.0.0.1")
    assert limiter.wait_seconds("dave", "10.0.0.1") > 0


def test_the_failures_kept_stay_few_and_hold_neither_name_nor_address(
    store: Store, limiter: LoginLimiter, clock: FakeClock
) -> None:
    typed = "my secret password"
    for _ in range(50):  # an attacker who does not wait
        limiter.failed(typed, "10.0.0.1")
        clock.advance(seconds=1)

    kept = rows(store, tables.admin_login_failures)
    assert len(kept) == 10  # the newest five of the name and of the address
    assert all(typed not in str(row) and "10.0.0.1" not in str(row) for row in kept)
    assert limiter.wait_seconds(typed, "10.0.0.9") == 15 * 60 - 5

    clock.advance(hours=1)
    limiter.failed("bob", "10.0.0.2")
    assert len(rows(store, tables.admin_login_failures)) == 2  # older than the window: gone


# --- the audit log ---------------------------------------------------------------------------


def test_the_audit_log_lists_the_newest_change_first_with_its_fields(
    store: Store, clock: FakeClock
) -> None:
    audit = AuditLog(store, clock)
    start = clock.now()
    audit.record("alice", "mailbox.save", "support", ["host", "password"])
    clock.advance(minutes=1)
    audit.record("bob", "dead_letter.replay", "17", [])
    audit.record("alice", "mailbox.enable", "support", [])

    entries = audit.recent()

    assert [(e.admin, e.action, e.target, e.fields) for e in entries] == [
        ("alice", "mailbox.enable", "support", []),
        ("bob", "dead_letter.replay", "17", []),
        ("alice", "mailbox.save", "support", ["host", "password"]),
    ]
    assert [e.at for e in entries] == [start + timedelta(minutes=1)] * 2 + [start]
    assert [e.action for e in audit.recent(limit=2)] == ["mailbox.enable", "dead_letter.replay"]


# --- mailroom admin create-user ---------------------------------------------------------------


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'data' / 'mailroom.db'}"
    store = Store(url)
    store.migrate()
    store.dispose()
    return {
        "MAILROOM_DATABASE_URL": url,
        "MAILROOM_SECRET_KEY": Fernet.generate_key().decode(),
        "MAILROOM_VAR_DIR": str(tmp_path / "data"),
    }


def created(environment: dict[str, str], name: str, password: str) -> bool:
    store = Store(environment["MAILROOM_DATABASE_URL"])
    try:
        return AdminUsers(store, FakeClock(), cheap_hasher()).verify(name, password)
    finally:
        store.dispose()


def test_create_user_takes_the_password_from_stdin(environment: dict[str, str]) -> None:
    done = CliRunner().invoke(
        create_user, ["Alice", "--password-stdin"], input=PASSWORD + "\n", env=environment
    )

    assert (done.exit_code, done.output) == (0, "admin user alice created\n")
    assert created(environment, "alice", PASSWORD)


def test_create_user_refuses_a_short_password_in_one_line(environment: dict[str, str]) -> None:
    done = CliRunner().invoke(
        create_user, ["alice", "--password-stdin"], input="short\n", env=environment
    )

    assert done.exit_code == 2
    assert done.output == (
        "mailroom: the password is shorter than 12 characters: choose a longer one\n"
    )
    assert not created(environment, "alice", "short")


def test_create_user_refuses_a_taken_name_and_says_to_choose_another(
    environment: dict[str, str],
) -> None:
    runner = CliRunner()
    first = runner.invoke(
        create_user, ["alice", "--password-stdin"], input=PASSWORD + "\n", env=environment
    )
    again = runner.invoke(
        create_user, ["ALICE", "--password-stdin"], input="other password!\n", env=environment
    )

    assert first.exit_code == 0
    assert again.exit_code == 2
    assert again.output == "mailroom: admin user alice exists already: choose another name\n"
    assert created(environment, "alice", PASSWORD)


def test_create_user_refuses_a_bad_name_before_asking_for_a_password(
    environment: dict[str, str],
) -> None:
    done = CliRunner().invoke(
        create_user, ["evil\u202etxt", "--password-stdin"], input="", env=environment
    )

    assert done.exit_code == 2
    assert "control or invisible characters" in done.output
    assert "\u202e" not in done.output and "Traceback" not in done.output


def test_create_user_without_a_terminal_or_a_password_on_stdin_says_how_to_give_one(
    environment: dict[str, str],
) -> None:
    asked = CliRunner().invoke(create_user, ["alice"], input=PASSWORD + "\n", env=environment)
    empty = CliRunner().invoke(
        create_user, ["alice", "--password-stdin"], input="", env=environment
    )

    assert asked.exit_code == empty.exit_code == 2
    assert "--password-stdin" in asked.output
    assert "no password on stdin" in empty.output
    assert not created(environment, "alice", PASSWORD)


def test_create_user_without_a_store_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mailroom.db"
    env = {"MAILROOM_DATABASE_URL": f"sqlite:///{missing}", "MAILROOM_SECRET_KEY": "x"}

    done = CliRunner().invoke(
        create_user, ["alice", "--password-stdin"], input=PASSWORD + "\n", env=env
    )

    assert done.exit_code == 2
    assert done.output.startswith(f"mailroom: no Mailroom data at {missing}")
    assert "Traceback" not in done.output
    assert not missing.exists()
