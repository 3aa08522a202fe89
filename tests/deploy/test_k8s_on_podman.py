"""The example overlay's Deployments run by ``podman kube play``: every stage's pod, as
rendered, with a broker and a store it cannot reach. Each worker stays up, says it is alive
and not ready (and why, without a password), waits with back-off, and stops on SIGTERM."""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from kube_play import container_state, for_podman, played, podman, worker_logs
from kustomized import EXAMPLE, Manifests, render
from servers import free_port

from services.pipeline import BUILDERS

#: The image deploy/Dockerfile makes (the compose file takes the same variable).
IMAGE = os.environ.get("MAILROOM_IMAGE", "localhost/mailroom:latest")
DEADLINE_S = 60
#: What the example's store URL hides: the password must never be shown.
PASSWORD = "REPLACE-WITH-THE-POSTGRES-PASSWORD"


@pytest.fixture(scope="module")
def image() -> str:
    if podman("images", "--quiet", IMAGE).strip() == "":
        pytest.fail(f"no image {IMAGE}: build it from deploy/Dockerfile (see deploy/README.md)")
    return IMAGE


def prefixed(folder: Path, prefix: str) -> Manifests:
    """The example overlay under ``prefix``, so that its pods and secrets are this test's."""
    relative = os.path.relpath(EXAMPLE, folder)
    (folder / "kustomization.yaml").write_text(
        f"resources:\n  - {relative}\nnamePrefix: {prefix}\n"
    )
    return Manifests(render(folder))


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_until(done: dict[str, bool], check: Callable[[str], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not all(done.values()):
        assert time.monotonic() < deadline, f"{what} within {DEADLINE_S} s: {done}"
        for stage in [s for s, ok in done.items() if not ok]:
            done[stage] = check(stage)
        time.sleep(0.5)


@pytest.fixture
def stages_without_store(image: str, tmp_path: Path) -> Iterator[dict[str, tuple[str, int]]]:
    """Every stage's pod, played; stage: (pod, health port)."""
    manifests = prefixed(tmp_path, f"t{os.getpid()}-")
    ports = iter([free_port() for _ in manifests.of_kind("Deployment")])
    key = {"secret-key": Fernet.generate_key().decode()}
    docs, secrets = for_podman(manifests, image=image, ports=ports, replace=key)
    with played(docs, secrets, tmp_path) as run:
        pods = {p.split("mailroom-")[1].removesuffix("-pod-0"): p for p in run.pods}
        yield {stage: (pods[stage], port) for stage, port in run.health_ports.items()}


def test_a_worker_that_cannot_reach_its_store_is_alive_not_ready_and_stops_on_sigterm(
    stages_without_store: dict[str, tuple[str, int]],
) -> None:
    assert sorted(stages_without_store) == sorted(BUILDERS)
    answers: dict[str, str] = {}

    def alive_not_ready(stage: str) -> bool:
        """Not ready, and why: "starting" at first, then what it cannot reach."""
        port = stages_without_store[stage][1]
        status, body = get(port, "/readyz")
        answers[stage] = body
        why = body.startswith("not ready: the store cannot be reached")
        return get(port, "/healthz")[0] == 200 and status == 503 and why

    wait_until(dict.fromkeys(stages_without_store, False), alive_not_ready, "alive, not ready")
    for stage, body in answers.items():
        assert PASSWORD not in body, stage

    def retried(stage: str) -> bool:
        """Waited with back-off, twice at least: it retries, and it did not crash meanwhile."""
        logs = worker_logs(stages_without_store[stage][0])
        return len(re.findall(r"waiting, not ready \(down [1-9]\d* s", logs)) >= 2

    wait_until(dict.fromkeys(stages_without_store, False), retried, "retried with back-off")
    for stage, (pod, _) in stages_without_store.items():
        state = container_state(pod)
        assert state["Running"] is True and state["RestartCount"] == 0, (stage, state)
        assert PASSWORD not in worker_logs(pod), stage
        # Inside the grace period (30 s): a worker that did not stop would be killed (137).
        podman("pod", "stop", "--time", "30", pod)
        state = container_state(pod)
        assert state["Running"] is False and state["ExitCode"] in (0, 143), (stage, state)
