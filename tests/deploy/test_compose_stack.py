"""The compose stack really runs: Mailroom's image and deploy/docker-compose.yml on podman,
with mail put into the Maildir it polls and the outcomes read back from inside the stack.

The images are built first: the Debian base once per machine (later runs find it), then
Mailroom's from deploy/Dockerfile and the RabbitMQ and PostgreSQL stand-ins from
tests/deploy/standins/ (podman's layer cache makes a rebuild of unchanged files quick).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from admin_client import AdminPage, Answer
from compose_stack import MAILDIR_IN_CONTAINER, OVERRIDE, Stack, outcome_refs
from cryptography.fernet import Fernet
from mail_accounting import DEAD, Audit, audit, deliver
from podman_images import BASE_IMAGE, REPO, build, podman
from servers import free_port

from bench.room import settings_for
from contracts.queues import MAIL_FETCHED, MAIL_VALIDATED

# One test process builds and runs the images (pytest-xdist keeps a group on one worker).
pytestmark = [pytest.mark.containers, pytest.mark.xdist_group("containers")]

MAILROOM_IMAGE = "localhost/mailroom:latest"
DEPLOY = REPO / "deploy"
#: How long a batch may take to be handled, from delivery to the last outcome.
BATCH_DEADLINE_S = 300

Say = Callable[[str], None]


@pytest.fixture(scope="module")
def images(mailroom_image: str, say: Say) -> None:
    """Mailroom's image, and the RabbitMQ and PostgreSQL stand-ins of the override file."""
    started = time.monotonic()
    for service in yaml.safe_load(OVERRIDE.read_text())["services"].values():
        build(service["image"], (REPO / "deploy" / service["build"]["context"]).resolve())
    say(f"built the RabbitMQ and PostgreSQL stand-ins in {time.monotonic() - started:.0f} s")


def inspect(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(podman("inspect", name).stdout)[0]
    return found


def test_the_image_runs_mailroom_as_its_own_user_under_tini(images: None) -> None:
    image = inspect(MAILROOM_IMAGE)
    config = image["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])

    ran = podman(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        MAILROOM_IMAGE,
        "-c",
        "id -un; command -v gcc cc c++ pip pip3 || true; "
        "python3 -c 'import magic; print(magic.from_buffer(b\"%PDF-1.4\", mime=True))'",
    )

    assert (config["User"], config["Entrypoint"]) == ("10001:10001", ["tini", "--", "mailroom"])
    assert image["Healthcheck"]["Test"] == ["CMD", "mailroom", "health"]
    assert (env["MAILROOM_HEALTH_PORT"], env["MAILROOM_VAR_DIR"]) == ("8080", "/var/lib/mailroom")
    # mailroom, no compiler and no pip, and libmagic at work:
    assert ran.stdout.split() == ["mailroom", "application/pdf"]


def test_the_build_context_holds_only_what_the_image_needs(images: None, tmp_path: Path) -> None:
    """.dockerignore keeps the virtualenv, data, history and caches out of every build."""
    probe = tmp_path / "Containerfile"
    probe.write_text(f"FROM {BASE_IMAGE}\nCOPY . /context\n")
    tag = f"localhost/mailroom-context-probe:{secrets.token_hex(4)}"
    build(tag, REPO, dockerfile=probe)
    try:
        listed = podman("run", "--rm", tag, "find", "/context", "-maxdepth", "1").stdout
        caches = podman("run", "--rm", tag, "find", "/context", "-name", "__pycache__").stdout
    finally:
        podman("rmi", "-f", tag, check=False)

    top = {Path(line).name for line in listed.split()} - {"context"}
    assert top == {"pyproject.toml", "constraints.txt", "contracts", "services"}
    assert caches == ""


def test_sigterm_reaches_mailroom_through_tini_and_ends_it_cleanly(images: None) -> None:
    """A worker waiting for a store that is not there; its image's health check tells."""
    name = f"mailroom-sigterm-{secrets.token_hex(4)}"
    podman(
        "run", "-d", "--name", name,
        "-e", f"MAILROOM_SECRET_KEY={Fernet.generate_key().decode()}",
        "-e", "MAILROOM_DATABASE_URL=postgresql+psycopg://mailroom@127.0.0.1:9/none",
        "-e", "MAILROOM_BROKER_URL=amqp://127.0.0.1:9//",
        MAILROOM_IMAGE, "worker", "parser",
    )  # fmt: skip
    try:
        end = time.monotonic() + 60
        while "cannot be reached" not in podman("logs", name).stderr:
            assert time.monotonic() < end, podman("logs", name).stderr
            time.sleep(1)
        healthy = podman("healthcheck", "run", name, check=False)
        ready = podman("exec", name, "mailroom", "health", "--ready", check=False)
        podman("stop", "-t", "30", name)
        state = inspect(name)["State"]
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)

    assert healthy.returncode == 0  # alive, though not ready
    assert ready.returncode == 1
    assert ready.stderr.startswith("mailroom: not ready: the store cannot be reached")
    assert state["ExitCode"] == 0  # 137: killed after the grace period, SIGTERM unheard


def test_up_without_the_key_refuses_naming_the_variable(tmp_path: Path) -> None:
    refused = Stack(tmp_path, f"mailroomrefused{os.getpid()}", stack_settings())
    del refused.variables["MAILROOM_SECRET_KEY"]
    refused.write_env()

    without_key = refused.compose("up", "-d", check=False)
    unfilled_example = refused.compose("up", "-d", env_file=DEPLOY / ".env.example", check=False)

    for done in (without_key, unfilled_example):
        assert done.returncode != 0
        assert "required variable MAILROOM_SECRET_KEY is missing a value" in done.stderr
        assert refused.variables["POSTGRES_PASSWORD"] not in done.stdout + done.stderr
    assert refused.containers(all_states=True) == []  # not even the broker or the database


def stack_settings() -> dict[str, Any]:
    """One help desk polling the Maildir the compose file mounts, every 3 seconds."""
    settings = settings_for(Path(MAILDIR_IN_CONTAINER))
    settings["helpdesks"][0]["mailboxes"][0]["fetch_every_minutes"] = 0.05
    return settings


class Delivered:
    """Every mail put into the stack's Maildir so far, and the outcome each must have."""

    def __init__(self) -> None:
        self.expected: dict[str, str] = {}
        self.next = 0

    def batch(self, stack: Stack, count: int) -> None:
        self.expected |= deliver(stack.maildir, range(self.next, self.next + count))
        self.next += count

    @property
    def dead(self) -> int:
        return sum(1 for kind in self.expected.values() if kind == DEAD)


@pytest.fixture(scope="module")
def stack(images: None, tmp_path_factory: pytest.TempPathFactory, say: Say) -> Iterator[Stack]:
    project = f"mailroomtest{os.getpid()}{secrets.token_hex(3)}"
    running = Stack(tmp_path_factory.mktemp("stack"), project, stack_settings())
    running.write_env(
        RABBITMQ_UI_ADDRESS=f"127.0.0.1:{free_port()}",
        MAILROOM_ADMIN_ADDRESS=f"127.0.0.1:{free_port()}",
    )
    started = time.monotonic()
    try:
        running.start()
        say(f"stack {project} up in {time.monotonic() - started:.0f} s")
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def delivered() -> Delivered:
    return Delivered()


def settled(stack: Stack, delivered: Delivered, *, deadline_s: float = BATCH_DEADLINE_S) -> Audit:
    """Wait until every mail delivered has an outcome and every dead-lettered one is in the
    error folder, then read the outcomes once more: the audit of that last reading."""
    end = time.monotonic() + deadline_s
    while True:
        found = audit(delivered.expected, *outcomes(stack))
        if found.accounted and stack.in_error_folder() >= delivered.dead:
            time.sleep(5)  # a poll round: a doubled outcome would show up now
            return audit(delivered.expected, *outcomes(stack))
        if time.monotonic() > end:
            raise AssertionError(
                f"after {deadline_s} s {len(found.lost)} of {found.mails} mails have no "
                f"outcome (first {found.lost[:5]}); {stack.in_error_folder()} in the error "
                f"folder\n{stack.logs()}"
            )
        time.sleep(3)


def outcomes(stack: Stack) -> tuple[list[str], list[str]]:
    """Read back with ``mailroom requests list --json`` and ``dlq list --json``, run in the
    stack."""
    return outcome_refs(stack.json("requests", "list"), stack.json("dlq", "list"))


def assert_clean(found: Audit, delivered: Delivered) -> None:
    assert found.clean, (
        f"lost {found.lost[:10]}, doubled {found.doubled[:10]}, strangers "
        f"{found.strangers[:10]}, wrong outcome {found.wrong_kind[:10]}"
    )
    assert found.dead_letters == delivered.dead
    assert found.requests + found.dead_letters == len(delivered.expected)


def queue_consumers(stack: Stack, queue: str) -> int:
    """Consumers of ``queue``, from RabbitMQ's management API (published on the host)."""
    address = stack.variables["RABBITMQ_UI_ADDRESS"]
    user = stack.variables.get("RABBITMQ_USER", "mailroom")
    token = base64.b64encode(f"{user}:{stack.variables['RABBITMQ_PASSWORD']}".encode()).decode()
    request = urllib.request.Request(
        f"http://{address}/api/queues/%2F/{queue}", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(json.load(answer)["consumers"])


def consumers_settle_at(stack: Stack, wanted: dict[str, int], *, deadline_s: float = 60) -> bool:
    """Whether the queues reach these consumer counts (the management API's figures lag the
    broker by a few seconds)."""
    end = time.monotonic() + deadline_s
    while {queue: queue_consumers(stack, queue) for queue in wanted} != wanted:
        if time.monotonic() > end:
            return False
        time.sleep(2)
    return True


def test_every_mail_becomes_exactly_one_request_or_dead_letter(
    stack: Stack, delivered: Delivered, say: Say
) -> None:
    started = time.monotonic()
    delivered.batch(stack, 200)

    found = settled(stack, delivered)

    say(
        f"200 mails: {found.requests} request mails, {found.dead_letters} dead letters in "
        f"{time.monotonic() - started:.0f} s"
    )
    assert_clean(found, delivered)
    assert stack.in_error_folder() == delivered.dead


def test_scaled_parsers_and_routers_lose_and_double_nothing(
    stack: Stack, delivered: Delivered, say: Say
) -> None:
    stack.write_env(MAILROOM_PARSER_REPLICAS="3", MAILROOM_ROUTER_REPLICAS="2")
    stack.start()
    assert (len(stack.containers("parser")), len(stack.containers("router"))) == (3, 2)
    assert consumers_settle_at(stack, {MAIL_FETCHED: 3, MAIL_VALIDATED: 2})
    started = time.monotonic()
    delivered.batch(stack, 300)

    found = settled(stack, delivered)

    say(f"300 more mails on 3 parsers and 2 routers in {time.monotonic() - started:.0f} s")
    assert_clean(found, delivered)


def test_a_stop_in_the_middle_of_a_run_loses_and_doubles_nothing(
    stack: Stack, delivered: Delivered, say: Say
) -> None:
    before = stack.handed_off()
    delivered.batch(stack, 200)
    end = time.monotonic() + 60
    while stack.handed_off() == before and time.monotonic() < end:
        time.sleep(0.2)
    in_flight = len(delivered.expected) - stack.handed_off()

    stack.stop()
    assert stack.containers() == []  # nothing runs any more
    codes = {name: inspect(name)["State"]["ExitCode"] for name in stack.containers(all_states=True)}
    say(f"exit statuses after the stop: {codes}")
    stack.start()
    found = settled(stack, delivered)

    say(
        f"stopped with {in_flight} of 200 mails still in the Maildir's new/; after up again "
        f"{found.requests} request mails, {found.dead_letters} dead letters"
    )
    assert_clean(found, delivered)


def test_migrate_run_again_finds_nothing_to_do(stack: Stack) -> None:
    done = stack.compose("run", "--rm", "--no-deps", "migrate")

    assert "already at the newest revision; nothing to do" in done.stdout
    assert "paused" not in done.stdout  # the same settings again change no mailbox


def mailbox_row(page: AdminPage, path: str, mailbox: str) -> tuple[Answer, str]:
    """The mailbox list and the mailbox's row, once the row shows a poll (the poller polls
    every 3 seconds, from its start on)."""
    end = time.monotonic() + 60
    while True:
        listed = page.request(path)
        found = re.search(rf'<tr data-mailbox="{re.escape(mailbox)}">(.*?)</tr>', listed.body, re.S)
        row = found[1] if found else ""
        polled = bool(row) and 'data-field="last_polled_at">never' not in row
        if polled or listed.status != 200 or time.monotonic() > end:
            return listed, row
        time.sleep(1)


def test_an_admin_made_in_the_stack_signs_in_and_sees_the_stacks_mailbox(stack: Stack) -> None:
    """The admin service came up healthy with the rest (``start`` waits for its check);
    ``create-user`` run in it makes the first admin, who signs in through the published port
    and finds the mailbox the poller polls. Cookies are Secure (the default): a browser on
    the host sends them to localhost, the client here sends them by hand."""
    password = secrets.token_urlsafe(18)
    made = stack.compose(
        "exec", "-T", "admin", "mailroom", "admin", "create-user", "alice", "--password-stdin",
        input=password + "\n",
    )  # fmt: skip
    page = AdminPage(f"http://{stack.variables['MAILROOM_ADMIN_ADDRESS']}")
    before = page.request("/")
    refused = page.sign_in("alice", "not-" + password)
    signed_in = page.sign_in("alice", password)
    mailbox = stack_settings()["helpdesks"][0]["mailboxes"][0]["name"]
    listed, row = mailbox_row(page, signed_in.headers["Location"], mailbox)

    assert password not in made.stdout + made.stderr
    assert before.status == 303 and before.headers["Location"].startswith("/login?")
    assert refused.status == 401 and "Wrong user name or password." in refused.body
    assert signed_in.status == 303
    (session,) = [c for c in page.set_cookies if c.startswith("mailroom_session=")]
    assert {"secure", "httponly", "samesite=lax"} <= {
        part.strip().lower() for part in session.split(";")
    }
    assert listed.status == 200 and row, listed.body
    # The poller's own figures, read from the store the stack shares: it is fetching.
    assert 'data-field="status">fetching' in row, row
    assert 'data-field="last_polled_at">never' not in row, row
