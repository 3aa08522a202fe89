"""The rendered Kubernetes manifests run by ``podman kube play`` (podman 4.3), the nearest thing
to a cluster on these machines.

Only what podman needs is changed, never the pods' own settings (command, env, probes,
mounts, security context):
- the image is the locally built one;
- each Deployment runs one replica and publishes its health port on a loopback port of its
  own (podman publishes every containerPort on the host, so five pods would all want 8080);
- Secrets are made as podman secrets beforehand, because 4.3 cannot use the ones it makes
  from a manifest: a Secret read as environment is its ``data`` as JSON (values in base64),
  one mounted as files is its values as JSON, written out as they are.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kustomized import Doc, Manifests

#: The machine's own podman settings need two changes (see ../shared/notes/containers.md).
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run podman with the project's containers.conf; its output, or an error with podman's."""
    env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class Played:
    """What ``kube play`` was given, so that all of it is removed again."""

    manifest: Path
    pods: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    #: The host port of each stage's health endpoint.
    health_ports: dict[str, int] = field(default_factory=dict)


def for_podman(
    manifests: Manifests, *, image: str, ports: Iterator[int], replace: dict[str, str]
) -> tuple[list[Doc], dict[str, bytes]]:
    """The ConfigMaps and Deployments to play, and the podman secrets they need (name:
    content). ``replace`` sets Secret entries (a real key for the placeholder)."""
    docs = list(manifests.of_kind("ConfigMap"))
    mounted = set()
    for deployment in manifests.of_kind("Deployment"):
        spec = deployment["spec"]
        spec["replicas"] = 1
        pod = spec["template"]["spec"]
        for c in pod["containers"]:
            c["image"] = image
            for port in c.get("ports", []):
                port |= {"hostPort": next(ports), "hostIP": "127.0.0.1"}
        mounted |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        docs.append(deployment)
    secrets = {}
    for secret in manifests.of_kind("Secret"):
        name = secret["metadata"]["name"]
        data = manifests.data("Secret", name)
        data |= {k: v for k, v in replace.items() if k in data}
        if name in mounted:
            secrets[name] = json.dumps(data).encode()
        else:
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            secrets[name] = json.dumps(encoded).encode()
    return docs, secrets


@contextlib.contextmanager
def played(docs: list[Doc], secrets: dict[str, bytes], folder: Path) -> Iterator[Played]:
    """``podman kube play`` of ``docs``; everything it made is removed afterwards."""
    run = Played(folder / "play.yaml")
    run.manifest.write_text(yaml.safe_dump_all(docs))
    for d in docs:
        if d["kind"] == "Deployment":
            stage = d["spec"]["template"]["spec"]["containers"][0]["args"][1]
            run.pods.append(f"{d['metadata']['name']}-pod-0")
            run.health_ports[stage] = d["spec"]["template"]["spec"]["containers"][0]["ports"][0][
                "hostPort"
            ]
    try:
        for name, content in secrets.items():
            (folder / name).write_bytes(content)
            podman("secret", "create", name, str(folder / name))
            run.secrets.append(name)
        podman("kube", "play", str(run.manifest))
        yield run
    finally:
        podman("kube", "down", str(run.manifest), check=False)
        for pod in run.pods:
            podman("pod", "rm", "--force", "--ignore", pod, check=False)
        for name in run.secrets:
            podman("secret", "rm", name, check=False)


def worker_logs(pod: str) -> str:
    """What the pod's worker wrote, on standard output and error alike."""
    env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    done = subprocess.run(
        ["podman", "logs", f"{pod}-worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        env=env,
    )
    return done.stdout


def container_state(pod: str) -> dict[str, object]:
    """The state of the pod's worker container (``Running``, ``ExitCode``...)."""
    name = f"{pod}-worker"
    state: dict[str, object] = json.loads(podman("inspect", "--format", "{{json .State}}", name))
    state["RestartCount"] = int(podman("inspect", "--format", "{{.RestartCount}}", name))
    return state
