"""The example overlay's Deployments run by ``podman kube play``: every stage's pod, as
rendered, with a broker and a store it cannot reach. Each worker stays up, says it is alive
and not ready (and why, without a password), waits with back-off, and stops on SIGTERM.
The admin page's pod starts and answers its probe."""

from __future__ import annotations

import copy
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kube_play import (
    container_state,
    for_podman,
    job_as_pod,
    logs,
    played,
    pod_spec,
    podman,
    podman_safe_key,
)
from kustomized import EXAMPLE, Doc, Manifests, render_prefixed, stage_of
from servers import free_port

from services.pipeline import BUILDERS

# Built by the same test process as the compose stack's tests (pytest-xdist keeps a group on
# one worker), so the image is built once.
pytestmark = [pytest.mark.containers, pytest.mark.xdist_group("containers")]
DEADLINE_S = 60
#: What the example's store URL hides: the password must never be shown.
PASSWORD = "REPLACE-WITH-THE-POSTGRES-PASSWORD"
VAR_DIR = "/var/lib/mailroom"


@pytest.fixture(scope="module")
def image(mailroom_image: str) -> str:
    return mailroom_image


def prefixed(folder: Path, prefix: str) -> Manifests:
    """The example overlay under ``prefix``, so that its pods and secrets are this test's."""
    return Manifests(render_prefixed(EXAMPLE, folder, prefix))


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
    """Every stage's pod, played; stage: (its worker container, its health port)."""
    manifests = prefixed(tmp_path, f"t{os.getpid()}-")
    deployments = list(manifests.deployments_by_stage().values())
    ports = iter([free_port() for _ in deployments])
    key = {"secret-key": podman_safe_key()}
    docs, secrets = for_podman(manifests, deployments, image=image, ports=ports, replace=key)
    with played(docs, secrets, tmp_path) as run:
        stages = {}
        for d in docs:
            if d["kind"] == "Deployment":
                pod = run.pods[d["metadata"]["name"]]
                port = pod_spec(d)["containers"][0]["ports"][0]["hostPort"]
                stages[stage_of(d)] = (f"{pod}-worker", port)
        yield stages


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
        written = logs(stages_without_store[stage][0])
        return len(re.findall(r"waiting, not ready \(down [1-9]\d* s", written)) >= 2

    wait_until(dict.fromkeys(stages_without_store, False), retried, "retried with back-off")
    for stage, (worker, _) in stages_without_store.items():
        state = container_state(worker)
        assert state["Running"] is True and state["RestartCount"] == 0, (stage, state)
        assert PASSWORD not in logs(worker), stage
        # Inside the grace period (30 s): a worker that did not stop would be killed (137).
        podman("stop", "--time", "30", worker)
        state = container_state(worker)
        assert state["Running"] is False and state["ExitCode"] in (0, 143), (stage, state)


def with_store_folder(workload: Doc, folder: Path) -> None:
    """The pod's data folder (an emptyDir) replaced by ``folder`` of the host, for uid 10001."""
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chown(folder, 10001, 10001)
    spec = pod_spec(workload)
    (var,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == VAR_DIR]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != var["name"]]
    spec["volumes"].append(
        {"name": var["name"], "hostPath": {"path": str(folder), "type": "Directory"}}
    )


def test_the_migration_job_run_twice_does_nothing_the_second_time(
    image: str, tmp_path: Path
) -> None:
    """The Job's pod, run twice on one store. The store is SQLite in a folder of the host
    instead of the Job's emptyDir, so that it outlives the first pod; all else is the Job's
    own: command, settings file, key, environment, security context."""
    manifests = prefixed(tmp_path, f"t{os.getpid()}-")
    pod = job_as_pod(manifests.of_kind("Job")[0])
    with_store_folder(pod, tmp_path / "store")
    replace = {
        "secret-key": podman_safe_key(),
        "MAILROOM_DATABASE_URL": f"sqlite:///{VAR_DIR}/mailroom.db",
    }
    said = []
    for run in ("first", "second"):
        folder = tmp_path / run
        folder.mkdir()
        docs, secrets = for_podman(manifests, [pod], image=image, ports=iter(()), replace=replace)
        with played(docs, secrets, folder) as played_run:
            container = f"{played_run.pods[pod['metadata']['name']]}-migrate"
            podman("wait", container, timeout=DEADLINE_S)
            state = container_state(container)
            said.append(logs(container))
            assert state["ExitCode"] == 0, f"the {run} run failed:\n{said[-1]}"
    first, second = said
    assert "migrated the store to revision" in first
    assert "already at the newest revision; nothing to do" in second
    assert "migrated" not in second and "settings changed" not in second, second
    assert "applied /etc/mailroom/settings.yaml" in second


def test_the_admin_page_starts_and_answers_its_probe_and_its_sign_in(
    image: str, tmp_path: Path
) -> None:
    """The admin Deployment as rendered, on a SQLite store in a folder of the host: an empty
    database file, which the page migrates as it starts (a missing one would be refused)."""
    manifests = prefixed(tmp_path, f"t{os.getpid()}-")
    admin = copy.deepcopy(manifests.admin_page())
    store = tmp_path / "store"
    with_store_folder(admin, store)
    (store / "mailroom.db").touch(mode=0o600)
    os.chown(store / "mailroom.db", 10001, 10001)
    replace = {
        "secret-key": podman_safe_key(),
        "MAILROOM_DATABASE_URL": f"sqlite:///{VAR_DIR}/mailroom.db",
    }
    port = free_port()
    docs, secrets = for_podman(manifests, [admin], image=image, ports=iter([port]), replace=replace)
    with played(docs, secrets, tmp_path) as run:
        container = f"{run.pods[admin['metadata']['name']]}-admin"
        deadline = time.monotonic() + DEADLINE_S
        while get(port, "/healthz") != (200, "ok"):
            state = container_state(container)
            assert state["Running"] is True, f"the page stopped ({state}):\n{logs(container)}"
            assert time.monotonic() < deadline, f"no /healthz in {DEADLINE_S} s:\n{logs(container)}"
            time.sleep(0.5)
        # Signed out, the page leads to its sign-in form (templates in the image).
        status, body = get(port, "/")
        podman("stop", "--time", "30", container)
        state = container_state(container)
        written = logs(container)

    assert status == 200 and '<form method="post" action="/login">' in body
    assert state["ExitCode"] in (0, 143), (state, written)
    assert "Traceback" not in written, written
