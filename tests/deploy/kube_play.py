"""The rendered Kubernetes manifests run by ``podman kube play`` (podman 4.3), the nearest thing
to a cluster on these machines.

Only what podman needs is changed, never the pods' own settings (command, env, probes,
mounts, security context):
- the image is the locally built one;
- each Deployment runs one replica and publishes its health port on a loopback port of its
  own (podman publishes every containerPort on the host, so five pods would all want 8080);
- Secrets are made as podman secrets beforehand, because 4.3 cannot use the ones it makes
  from a manifest. A Secret read as environment is its ``data`` as JSON (values in base64,
  decoded by podman). A Secret mounted as files is the whole Secret as JSON, and podman
  writes each entry of its ``data`` as it stands, without decoding it: so such an entry is
  given as its plain value, which must read as base64 too (``podman_safe_key``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography.fernet import Fernet
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
    #: The pod of each workload: ``NAME-pod-0`` for a Deployment, ``NAME`` for a Pod.
    pods: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def job_as_pod(job: Doc) -> Doc:
    """The pod a Job makes, as a Pod (podman plays no Jobs): its template, run once."""
    template = copy.deepcopy(job["spec"]["template"])
    metadata = {"name": job["metadata"]["name"], "labels": template["metadata"]["labels"]}
    spec = template["spec"] | {"restartPolicy": "Never"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def pod_spec(workload: Doc) -> Doc:
    """The pod spec of a Pod or Deployment, itself (changes to it change the workload)."""
    spec: Doc = workload["spec"]
    return spec if workload["kind"] == "Pod" else spec["template"]["spec"]


def for_podman(
    manifests: Manifests,
    workloads: list[Doc],
    *,
    image: str,
    ports: Iterator[int],
    replace: dict[str, str],
) -> tuple[list[Doc], dict[str, bytes]]:
    """The ConfigMaps and the workloads (Deployments, Pods) to play, and the podman secrets
    they need (name: content). ``replace`` sets Secret entries (a real key for the
    placeholder)."""
    docs = list(manifests.of_kind("ConfigMap"))
    mounted = set()
    for workload in copy.deepcopy(workloads):
        if workload["kind"] == "Deployment":
            workload["spec"]["replicas"] = 1
        pod = pod_spec(workload)
        for c in pod["containers"]:
            c["image"] = image
            for port in c.get("ports", []):
                port |= {"hostPort": next(ports), "hostIP": "127.0.0.1"}
        mounted |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        docs.append(workload)
    secrets = {}
    for secret in manifests.of_kind("Secret"):
        name = secret["metadata"]["name"]
        data = manifests.data("Secret", name)
        data |= {k: v for k, v in replace.items() if k in data}
        if name in mounted:
            for key, value in data.items():
                assert _is_base64(value), f"podman 4.3 cannot mount {name}/{key}: see above"
            whole = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
            secrets[name] = json.dumps(whole | {"data": data}).encode()
        else:
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            secrets[name] = json.dumps(encoded).encode()
    return docs, secrets


def podman_safe_key() -> str:
    """A Fernet key whose text is standard base64 as well (no ``-`` or ``_``), which podman
    4.3 writes into a Secret volume unchanged (see above)."""
    while True:
        key = Fernet.generate_key().decode()
        if _is_base64(key):
            return key


def _is_base64(text: str) -> bool:
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    except ValueError:
        return False


@contextlib.contextmanager
def played(docs: list[Doc], secrets: dict[str, bytes], folder: Path) -> Iterator[Played]:
    """``podman kube play`` of ``docs``; everything it made is removed afterwards."""
    run = Played(folder / "play.yaml")
    run.manifest.write_text(yaml.safe_dump_all(docs))
    for d in docs:
        name = d["metadata"]["name"]
        if d["kind"] in ("Deployment", "Pod"):
            run.pods[name] = f"{name}-pod-0" if d["kind"] == "Deployment" else name
    try:
        for name, content in secrets.items():
            (folder / name).write_bytes(content)
            podman("secret", "create", name, str(folder / name))
            run.secrets.append(name)
        podman("kube", "play", str(run.manifest))
        yield run
    finally:
        podman("kube", "down", str(run.manifest), check=False)
        for pod in run.pods.values():
            podman("pod", "rm", "--force", "--ignore", pod, check=False)
        for name in run.secrets:
            podman("secret", "rm", name, check=False)
        # kube play makes a volume per ConfigMap and Secret volume; 4.3's kube down keeps them.
        for name in _object_volumes(docs):
            podman("volume", "rm", "--force", name, check=False)


def _object_volumes(docs: list[Doc]) -> set[str]:
    """The names of the ConfigMaps and Secrets the played pods mount as volumes."""
    names = set()
    for d in docs:
        if d["kind"] in ("Deployment", "Pod"):
            for volume in pod_spec(d).get("volumes", []):
                if "configMap" in volume:
                    names.add(volume["configMap"]["name"])
                if "secret" in volume:
                    names.add(volume["secret"]["secretName"])
    return names


def logs(container: str) -> str:
    """What a container wrote, on standard output and error alike."""
    env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    done = subprocess.run(
        ["podman", "logs", container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        env=env,
    )
    return done.stdout


def container_state(container: str) -> dict[str, object]:
    """A container's state (``Running``, ``ExitCode``...) and ``RestartCount``."""
    raw = podman("inspect", "--format", "{{json .State}}", container)
    state: dict[str, object] = json.loads(raw)
    state["RestartCount"] = int(podman("inspect", "--format", "{{.RestartCount}}", container))
    return state
