"""The project's compose file run by podman-compose, as an operator would run it.

Only ``compose.override.yml`` is added: it swaps the RabbitMQ and PostgreSQL image names for
stand-ins. Every other value comes from ``deploy/docker-compose.yml`` and an env file written
here, with a fresh key.

podman 4.3 (Debian 12) cannot run ``up`` on this file in one go: podman-compose skips
``service_healthy`` conditions on podman before 4.6, and podman 4.3 refuses to start a
container that requires an exited one (the finished ``migrate``) while the latter's own
dependencies run. So ``start`` does what compose does, service by service in dependency
order, with ``--no-deps``: it waits for each condition the file states, using the file's own
health checks (``podman healthcheck run``) and ``migrate``'s exit status.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet
from podman_images import REPO, environment, podman

COMPOSE_FILE = REPO / "deploy" / "docker-compose.yml"
OVERRIDE = Path(__file__).resolve().parent / "compose.override.yml"
#: Variables the compose file reads; the tests' own environment must not lend them values.
COMPOSE_VARIABLES = ("MAILROOM_", "RABBITMQ_", "POSTGRES_")
#: Where the compose file mounts ``MAILROOM_MAILDIR`` in the poller.
MAILDIR_IN_CONTAINER = "/var/mail/mailroom"
MAILROOM_UID = 10001


def compose_definition() -> dict[str, Any]:
    """``deploy/docker-compose.yml`` as YAML (anchors and merge keys resolved)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def podman_compose() -> str:
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if found is None:
        raise AssertionError("podman-compose not found: `make test` installs it (pyproject.toml)")
    return found


def start_order(services: dict[str, Any]) -> list[list[str]]:
    """The services in layers: each layer depends only on the layers before it."""
    placed: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(services):
        layer = sorted(
            name
            for name, service in services.items()
            if name not in done and set(service.get("depends_on", {})) <= done
        )
        if not layer:
            raise AssertionError(f"depends_on has a cycle among {set(services) - done}")
        placed.append(layer)
        done.update(layer)
    return placed


def awaited_conditions(services: dict[str, Any]) -> dict[str, set[str]]:
    """For each service, the conditions other services wait for on it."""
    wanted: dict[str, set[str]] = {name: set() for name in services}
    for service in services.values():
        for name, dependency in service.get("depends_on", {}).items():
            wanted[name].add(dependency.get("condition", "service_started"))
    return wanted


class Stack:
    """One compose project: its env file, its Maildir (bind-mounted into the poller) and
    the podman-compose commands that drive it."""

    def __init__(self, workdir: Path, project: str, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.project = project
        self.maildir = workdir / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        # The poller runs as mailroom (uid 10001): it moves mails between these folders.
        for folder in (self.maildir, *self.maildir.iterdir()):
            os.chown(folder, MAILROOM_UID, MAILROOM_UID)
        settings_file = workdir / "settings.yaml"
        settings_file.write_text(yaml.safe_dump(settings))
        self.variables = {
            "MAILROOM_SECRET_KEY": Fernet.generate_key().decode(),
            "RABBITMQ_PASSWORD": secrets.token_hex(16),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "MAILROOM_SETTINGS_FILE": str(settings_file),
            "MAILROOM_MAILDIR": str(self.maildir),
        }
        self.env_file = workdir / "stack.env"
        self.write_env()

    def write_env(self, **changes: str) -> None:
        """Write the env file the stack runs with (after ``changes``)."""
        self.variables.update(changes)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.variables.items()))

    # -- podman-compose --------------------------------------------------------------------

    def compose(
        self,
        *args: str,
        env_file: Path | None = None,
        timeout: float = 300,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in environment().items() if not k.startswith(COMPOSE_VARIABLES)}
        command = [
            podman_compose(),
            "--env-file",
            str(env_file or self.env_file),
            "-p",
            self.project,
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(OVERRIDE),
            *args,
        ]
        done = subprocess.run(
            command,
            env=env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman-compose {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{self.logs()}"
            )
        return done

    def start(self, *, deadline_s: float = 300) -> None:
        """Bring every service up in the order and on the conditions of the compose file."""
        services = compose_definition()["services"]
        conditions = awaited_conditions(services)
        for layer in start_order(services):
            self.compose("up", "-d", "--no-deps", *layer)
            for service in layer:
                wanted = conditions[service]
                if "service_completed_successfully" in wanted:
                    self.wait_completed(service)
                elif "service_healthy" in wanted or not wanted:
                    # Nothing waits on the stages: they are ready when their checks pass.
                    self.wait_healthy(service, deadline_s=deadline_s)

    def stop(self) -> None:
        self.compose("stop", timeout=600)

    def down(self) -> None:
        """Containers, network and volumes gone; what podman-compose missed is removed by
        the project's label, and named in the error."""
        self.compose("down", "-v", "--remove-orphans", timeout=600, check=False)
        label = f"label=io.podman.compose.project={self.project}"
        left = self.containers(all_states=True)
        if left:
            podman("rm", "-f", "-t", "0", *left, check=False)
        volumes = podman("volume", "ls", "-q", "--filter", label).stdout.split()
        if volumes:
            podman("volume", "rm", "-f", *volumes, check=False)
        networks = self.networks()
        if networks:
            podman("network", "rm", "-f", *networks, check=False)
        if left or volumes or networks:
            raise AssertionError(
                f"podman-compose down left containers {left}, volumes {volumes}, "
                f"networks {networks}"
            )

    def networks(self) -> list[str]:
        names = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
        return [n for n in names if n.startswith(f"{self.project}_")]

    # -- containers ------------------------------------------------------------------------

    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[str]:
        filters = ["--filter", f"label=io.podman.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listing = podman("ps", *(["-a"] if all_states else []), *filters, "--format", "{{.Names}}")
        return sorted(listing.stdout.split())

    def wait_healthy(self, service: str, *, deadline_s: float = 300) -> None:
        """Run each container's compose health check until it passes."""
        end = time.monotonic() + deadline_s
        for name in self.containers(service, all_states=True):
            while podman("healthcheck", "run", name, check=False, timeout=60).returncode != 0:
                state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
                if state != "running" or time.monotonic() > end:
                    raise AssertionError(f"{name} is not healthy ({state}):\n{self.logs(service)}")
                time.sleep(2)

    def wait_completed(self, service: str) -> None:
        """Wait for a one-shot service to end; it must end with status 0."""
        for name in self.containers(service, all_states=True):
            code = podman("wait", name, timeout=900).stdout.strip()
            if code != "0":
                raise AssertionError(f"{name} exited with {code}:\n{self.logs(service)}")

    def logs(self, service: str | None = None, lines: int = 40) -> str:
        names = (
            self.containers(service, all_states=True)
            if service
            else self.containers(all_states=True)
        )
        parts = []
        for name in names:
            done = podman("logs", "--tail", str(lines), name, check=False)
            parts.append(f"--- {name}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)

    # -- Mailroom inside the stack ---------------------------------------------------------

    def mailroom(self, *args: str, service: str = "router") -> str:
        """``mailroom ARGS`` run in a container of ``service``; its standard output."""
        return self.compose("exec", "-T", service, "mailroom", *args).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.mailroom(*args, "--json"))

    def in_error_folder(self) -> int:
        folder = self.maildir / ".Errors"
        return sum(1 for sub in ("cur", "new") for _ in (folder / sub).glob("*"))

    def handed_off(self) -> int:
        """Mails the poller has marked seen (moved out of ``new/``)."""
        return sum(1 for _ in (self.maildir / "cur").iterdir()) + self.in_error_folder()


def outcome_refs(
    requests: Iterable[dict[str, Any]], dead: Iterable[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """The Maildir keys of every request mail (opening or conversation) and of every
    dead-letter entry, with repeats."""
    on_requests = [m["source"]["ref"] for r in requests for m in r["mails"]]
    return on_requests, [d["source"]["ref"] for d in dead]
