"""deploy/docker-compose.yml and deploy/Dockerfile as files: what an operator relies on
before anything runs (test_compose_stack.py runs them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from compose_stack import COMPOSE_FILE, compose_definition

from contracts.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"
STAGES = ("poller", "parser", "validator", "router", "notifier")
SETTINGS_IN_CONTAINER = "/etc/mailroom/settings.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found: dict[str, Any] = compose_definition()["services"]
    return found


def mailroom_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if name not in ("rabbitmq", "postgres")}


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert COMPOSE_SCHEMA.exists(), f"the Compose schema is missing at {COMPOSE_SCHEMA}"
    checker = Path(sys.executable).parent / "check-jsonschema"

    done = subprocess.run(
        [str(checker), "--schemafile", str(COMPOSE_SCHEMA), str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_each_stage_is_a_service_running_its_worker_from_the_one_image(services) -> None:
    assert set(services) == {"rabbitmq", "postgres", "migrate", *STAGES, "admin"}
    for stage in STAGES:
        assert services[stage]["command"] == ["worker", stage]
    images = {s["image"] for s in mailroom_services(services).values()}
    assert images == {"${MAILROOM_IMAGE:-localhost/mailroom:latest}"}
    assert all(
        s["build"]["dockerfile"] == "deploy/Dockerfile"
        for s in mailroom_services(services).values()
    )


def test_every_service_has_a_health_check(services) -> None:
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for stage in STAGES:
        assert services[stage]["healthcheck"]["test"] == ["CMD", "mailroom", "health", "--ready"]


def test_stages_start_once_migrate_succeeded_on_a_healthy_broker_and_store(services) -> None:
    healthy = {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"] == {"rabbitmq": healthy, "postgres": healthy}
    for stage in STAGES:
        assert services[stage]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "rabbitmq": healthy,
            "postgres": healthy,
        }
        assert services[stage]["restart"] == "unless-stopped"
        assert services[stage]["stop_grace_period"]


def test_the_admin_page_is_a_service_of_the_image_started_like_the_stages(services) -> None:
    admin = services["admin"]
    env = admin["environment"]

    assert admin["command"] == ["admin"]
    assert admin["depends_on"] == services["parser"]["depends_on"]
    assert (admin["restart"], bool(admin["stop_grace_period"])) == ("unless-stopped", True)
    # Its port, where it is published, and where its health check asks are one port.
    port = env["MAILROOM_ADMIN_PORT"]
    assert admin["ports"] == [f"${{MAILROOM_ADMIN_ADDRESS:-127.0.0.1:{port}}}:{port}"]
    assert admin["healthcheck"]["test"] == ["CMD", "mailroom", "health", "--port", port]


def compose_env(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    """A service's environment as compose gives it: ``${NAME}``, ``${NAME:-default}`` and
    ``${NAME:?error}`` replaced from ``variables``."""

    def value(match: re.Match[str]) -> str:
        name, how, default = match.groups()
        if name in variables and (variables[name] or how is None):
            return variables[name]
        assert how == ":-", f"${{{name}}} is required"
        return default

    pattern = re.compile(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}")
    return {k: pattern.sub(value, str(v)) for k, v in service["environment"].items()}


def admin_settings(services: dict[str, Any], monkeypatch, **variables: str) -> Settings:
    """The settings ``mailroom admin`` reads in its container, for these .env variables."""
    secrets = {"MAILROOM_SECRET_KEY": "k", "RABBITMQ_PASSWORD": "p", "POSTGRES_PASSWORD": "p"}
    for name in [n for n in os.environ if n.startswith("MAILROOM_")]:
        monkeypatch.delenv(name)
    for name, value in compose_env(services["admin"], secrets | variables).items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_admin_page_listens_in_its_container_with_secure_cookies_by_default(
    services, monkeypatch
) -> None:
    settings = admin_settings(services, monkeypatch)

    assert (settings.admin_host, settings.admin_port) == ("0.0.0.0", 8080)
    assert settings.admin_cookie_secure is True
    assert settings.admin_url is None  # an unset MAILROOM_ADMIN_URL arrives empty
    assert settings.database_url is not None and "@postgres:5432/" in settings.database_url


def test_the_env_file_may_switch_secure_cookies_off_and_set_the_public_address(
    services, monkeypatch
) -> None:
    settings = admin_settings(
        services,
        monkeypatch,
        MAILROOM_ADMIN_COOKIE_SECURE="false",
        MAILROOM_ADMIN_URL="https://mailroom.example.com",
    )

    assert settings.admin_cookie_secure is False
    assert settings.admin_url == "https://mailroom.example.com"


def test_stages_can_be_scaled(services) -> None:
    """``--scale`` needs services without fixed names and host ports."""
    for stage in STAGES:
        assert "container_name" not in services[stage] and "ports" not in services[stage]
        replicas = services[stage]["deploy"]["replicas"]
        assert replicas == f"${{MAILROOM_{stage.upper()}_REPLICAS:-1}}"


def test_migrate_applies_the_settings_file_mounted_read_only(services) -> None:
    migrate = services["migrate"]

    assert migrate["command"] == ["migrate", "--config", SETTINGS_IN_CONTAINER]
    [mount] = migrate["volumes"]
    assert mount.endswith(f":{SETTINGS_IN_CONTAINER}:ro")
    assert migrate["restart"] == "no"


def test_every_mailroom_variable_is_a_setting_and_the_secrets_come_from_outside(
    services,
) -> None:
    known = {f"MAILROOM_{name.upper()}" for name in Settings.model_fields}
    for name, service in mailroom_services(services).items():
        env = service["environment"]
        assert set(env) <= known, f"{name}: {set(env) - known} are no Mailroom settings"
        assert {"MAILROOM_SECRET_KEY", "MAILROOM_BROKER_URL", "MAILROOM_DATABASE_URL"} <= set(env)
        # Required, never defaulted: without them `up` refuses, naming the variable.
        assert env["MAILROOM_SECRET_KEY"].startswith("${MAILROOM_SECRET_KEY:?")
        assert "${RABBITMQ_PASSWORD:?" in env["MAILROOM_BROKER_URL"]
        assert "${POSTGRES_PASSWORD:?" in env["MAILROOM_DATABASE_URL"]


def test_the_env_example_documents_every_variable_the_compose_file_reads() -> None:
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    example = (DEPLOY / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, re.MULTILINE))

    assert read <= documented, f"not in deploy/.env.example: {sorted(read - documented)}"
    # The secrets have no value in the example: copying it unfilled makes `up` refuse.
    for secret in ("MAILROOM_SECRET_KEY", "RABBITMQ_PASSWORD", "POSTGRES_PASSWORD"):
        assert re.search(rf"^{secret}=$", example, re.MULTILINE)


def test_the_image_builds_on_debian_bookworm_slim_unless_told_otherwise() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()

    assert re.search(r"^ARG BASE=debian:bookworm-slim$", dockerfile, re.MULTILINE)
    assert len(re.findall(r"^FROM \$\{BASE\}", dockerfile, re.MULTILINE)) == 2
    assert re.search(r'^ENTRYPOINT \["tini", "--", "mailroom"\]$', dockerfile, re.MULTILINE)
    assert "-c /constraints.txt" in dockerfile  # the versions `make` installs
