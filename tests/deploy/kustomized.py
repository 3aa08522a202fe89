"""The Kubernetes manifests of ``deploy/k8s`` as a cluster would receive them: rendered by
``kubectl kustomize``, with lookups by kind and name and the environment a container gets."""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
SCHEMAS = REPO.parent / "shared" / "schemas"

Doc = dict[str, Any]


def kubectl() -> str:
    """The kubectl executable, or an error that says how to get it."""
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError(
            "kubectl is not installed, and it renders deploy/k8s (`kubectl kustomize`): "
            "install it (https://kubernetes.io/docs/tasks/tools/) and run the tests again"
        )
    return found


def render(folder: Path) -> list[Doc]:
    """``kubectl kustomize FOLDER``, parsed; an error with kubectl's own words on failure."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def render_prefixed(overlay: Path, folder: Path, prefix: str) -> list[Doc]:
    """``overlay`` rendered through a kustomization in ``folder`` that adds ``namePrefix``."""
    relative = os.path.relpath(overlay, folder)
    (folder / "kustomization.yaml").write_text(
        f"resources:\n  - {relative}\nnamePrefix: {prefix}\n"
    )
    return render(folder)


class Manifests:
    """One rendered kustomization."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def named(self, kind: str, name: str) -> Doc:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert found, f"no {kind} named {name!r} in the rendered manifests"
        return found[0]

    def deployments_by_stage(self) -> dict[str, Doc]:
        """Each worker's Deployment under the stage it runs (``mailroom worker STAGE``)."""
        return {stage_of(d): d for d in self.of_kind("Deployment") if args_of(d)[:1] == ["worker"]}

    def admin_page(self) -> Doc:
        """The Deployment of the admin page (``mailroom admin``): there is one."""
        (found,) = [d for d in self.of_kind("Deployment") if args_of(d) == ["admin"]]
        return found

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or Secret's entries, decoded."""
        doc = self.named(kind, name)
        if kind == "Secret":
            encoded = doc.get("data") or {}
            return {k: base64.b64decode(v).decode() for k, v in encoded.items()} | (
                doc.get("stringData") or {}
            )
        return dict(doc.get("data") or {})

    def env(self, container: Doc) -> dict[str, str]:
        """The environment a container starts with (``envFrom``, then ``env``), as far as
        the rendered objects tell; a value from a field or resource reference is ``<ref>``."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env |= self.data("ConfigMap", source["configMapRef"]["name"])
            if "secretRef" in source:
                env |= self.data("Secret", source["secretRef"]["name"])
        for item in container.get("env", []):
            env[item["name"]] = item.get("value", "<ref>")
        return env


def args_of(deployment: Doc) -> list[str]:
    """The arguments of a Deployment's one container (``mailroom`` is the entry point)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container.get("args", []))


def stage_of(deployment: Doc) -> str:
    """The stage a Deployment's worker runs, from its arguments ``worker STAGE``."""
    args = args_of(deployment)
    assert len(args) >= 2 and args[0] == "worker", (
        f"Deployment {deployment['metadata']['name']} does not run `mailroom worker STAGE` "
        f"(args {args})"
    )
    return str(args[1])


def pod_specs(manifests: Manifests) -> Iterator[tuple[str, Doc]]:
    """Every pod template: of each Deployment and Job, with a name to report."""
    for doc in manifests.of_kind("Deployment") + manifests.of_kind("Job"):
        yield f"{doc['kind']} {doc['metadata']['name']}", doc["spec"]["template"]["spec"]


#: The volume kinds that hold files of an object, and the field naming that object.
FILE_SOURCES = (("configMap", "ConfigMap", "name"), ("secret", "Secret", "secretName"))


def mounted_file(pod: Doc, path: str) -> tuple[str, str, str | None, bool]:
    """What the pod's container sees at ``path``: (kind, name, key, read-only) of the
    ConfigMap or Secret entry mounted there (key None: not one of its entries)."""
    target = PurePosixPath(path)
    for mount in pod["containers"][0].get("volumeMounts", []):
        at = PurePosixPath(mount["mountPath"])
        if "subPath" in mount and at == target:
            inside = mount["subPath"]
        elif "subPath" not in mount and at in target.parents:
            inside = str(target.relative_to(at))
        else:
            continue
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        for field, kind, name in FILE_SOURCES:
            if field in volume:
                items = volume[field].get("items") or [{"key": inside, "path": inside}]
                key = next((i["key"] for i in items if i["path"] == inside), None)
                return kind, volume[field][name], key, bool(mount.get("readOnly"))
        raise AssertionError(f"{path} is in volume {mount['name']}: no ConfigMap or Secret")
    raise AssertionError(f"nothing is mounted at {path}")


def served_schema(crd_file: Path, version: str) -> Doc:
    """The ``openAPIV3Schema`` of a CRD's served ``version``."""
    crd = yaml.safe_load(crd_file.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version and v.get("served"):
            return dict(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{crd_file.name} serves no version {version}")


def closed(schema: Doc) -> Doc:
    """``schema`` refusing properties it does not name, as the API server does for a custom
    resource (kubectl's strict field validation): a misspelt field is an error, not dropped.
    Objects that keep unknown fields or have free-form keys stay open."""
    schema = copy.deepcopy(schema)
    _close(schema)
    return schema


def _close(node: Doc) -> None:
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    children = list(node.get("properties", {}).values())
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            children.append(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        children += node.get(key, [])
    for child in children:
        _close(child)
