"""deploy/docker-compose.yml and deploy/Dockerfile as files: what an operator relies on
before anything runs (test_compose_stack.py runs them)."""

from __future__ import annotations

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
    assert set(services) == {"rabbitmq", "postgres", "migrate", *STAGES}
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
