"""deploy/k8s: what ``kubectl apply -k`` would send a cluster is valid, complete and agrees
with the code (stages, queue names, settings, health port). No cluster runs here, so the
built-in kinds are checked by kubernetes-validate and KEDA's kinds against its CRD schemas."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet
from kombu import Connection
from kubernetes_validate.utils import all_versions
from kustomized import (
    BASE,
    EXAMPLE,
    SCHEMAS,
    Doc,
    Manifests,
    closed,
    mounted_file,
    pod_specs,
    render,
    render_prefixed,
    served_schema,
    stage_of,
)

from contracts import queues
from contracts.settings import Settings, load_settings_file
from services.pipeline import BUILDERS
from services.runtime.store import Store

HEALTH_PORT = 8080
SETTINGS_FILE = "/etc/mailroom/settings.yaml"
#: The built-in kinds the manifests use; each must be checked, none only warned about.
BUILT_IN = {
    "Namespace",
    "ConfigMap",
    "Secret",
    "Deployment",
    "PodDisruptionBudget",
    "Job",
    "Service",
}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
KEDA_SCALED = {"parser", "validator", "router"}
#: Settings that hold a password or the key: never in a ConfigMap.
SECRET_SETTINGS = ("MAILROOM_BROKER_URL", "MAILROOM_DATABASE_URL", "MAILROOM_SECRET_KEY")


@pytest.fixture(scope="module")
def example() -> Manifests:
    return Manifests(render(EXAMPLE))


@pytest.fixture(scope="module")
def base() -> Manifests:
    return Manifests(render(BASE))


@pytest.fixture(scope="module")
def consumed_queues(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The queues each stage's worker consumes, from the stages themselves."""
    folder = tmp_path_factory.mktemp("stages")
    settings = Settings(
        secret_key=Fernet.generate_key().decode(),
        var_dir=folder,
        database_url=f"sqlite:///{folder / 'store.db'}",
    )
    store = Store(settings.effective_database_url)
    store.migrate()
    found = {}
    with Connection("memory://") as connection:
        for name, build in BUILDERS.items():
            stage = build(settings, connection=connection, store=store)
            found[name] = list(stage.handlers)
            for stop in stage.on_stop:
                stop()
    return found


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """``kubernetes-validate --strict`` against the oldest and newest Kubernetes it knows."""
    versions = all_versions()
    command = [sys.executable, "-m", "kubernetes_validate", "--strict"]
    command += ["-k", versions[0], "-k", versions[-1], str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def write(docs: list[Doc], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


def container(pod: Doc) -> Doc:
    (only,) = pod["containers"]
    return dict(only)


# --- rendering and schemas ------------------------------------------------------------


def test_base_and_example_render_and_the_example_sets_namespace_and_image(
    base: Manifests, example: Manifests
) -> None:
    assert set(base.deployments_by_stage()) == set(example.deployments_by_stage())
    assert example.named("Namespace", "mailroom")
    for doc in example.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "mailroom", doc["metadata"]["name"]
    for where, pod in pod_specs(example):
        image = container(pod)["image"]
        assert image == "registry.example.com/helpdesk/mailroom:0.1.0", (where, image)


@pytest.mark.parametrize("which", ["base", "example"])
def test_built_in_kinds_pass_kubernetes_validate_strict(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    manifests: Manifests = request.getfixturevalue(which)
    done = kubernetes_validate(write(manifests.docs, tmp_path / f"{which}.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    # Each built-in object was checked against each version, not only warned about.
    for doc in manifests.docs:
        if doc["kind"] in BUILT_IN:
            resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            passed = done.stdout.count(f"passed for resource {resource} against")
            assert passed == 2, f"{resource} was not validated:\n{done.stdout}"
    assert {d["kind"] for d in manifests.docs} <= BUILT_IN | KEDA_KINDS


def test_kubernetes_validate_refuses_a_misspelt_field(example: Manifests, tmp_path: Path) -> None:
    """The check above can fail: a field the API does not know is an error."""
    docs = copy.deepcopy(example.docs)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["livenesProbe"] = pod["containers"][0]["livenessProbe"]
    done = kubernetes_validate(write(docs, tmp_path / "misspelt.yaml"))
    assert done.returncode != 0
    assert "livenesProbe" in done.stdout + done.stderr


def keda_schema(kind: str, api_version: str) -> Doc:
    crd = SCHEMAS / f"keda.sh_{kind.lower()}s.yaml"
    assert crd.is_file(), f"missing {crd}: the KEDA CRD schemas live in ../shared/schemas"
    return closed(served_schema(crd, api_version.split("/")[1]))


def keda_problems(doc: Doc) -> list[str]:
    validator = jsonschema.Draft7Validator(keda_schema(doc["kind"], doc["apiVersion"]))
    errors = validator.iter_errors(doc)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_keda_kinds_match_their_crd_schemas(example: Manifests) -> None:
    keda = [d for d in example.docs if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in keda} == KEDA_KINDS
    for doc in keda:
        assert keda_problems(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"


def test_a_misspelt_keda_field_is_refused(example: Manifests) -> None:
    scaled = copy.deepcopy(example.of_kind("ScaledObject")[0])
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    assert any("maxReplicas" in p for p in keda_problems(scaled))


# --- agreement with the code ----------------------------------------------------------


def test_a_deployment_per_stage_and_one_for_the_admin_page(example: Manifests) -> None:
    workers = example.deployments_by_stage()
    assert sorted(stage_of(d) for d in workers.values()) == sorted(BUILDERS)
    admin = example.admin_page()
    assert len(example.of_kind("Deployment")) == len(workers) + 1
    assert admin["metadata"]["name"] == "mailroom-admin"


def test_keda_scales_parser_validator_and_router_on_the_queue_each_consumes(
    example: Manifests, consumed_queues: dict[str, list[str]]
) -> None:
    deployments = {d["metadata"]["name"]: s for s, d in example.deployments_by_stage().items()}
    scaled = {}
    for obj in example.of_kind("ScaledObject"):
        stage = deployments[obj["spec"]["scaleTargetRef"]["name"]]
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert int(trigger["metadata"]["value"]) > 0
        assert 1 <= obj["spec"]["minReplicaCount"] < obj["spec"]["maxReplicaCount"]
        scaled[stage] = trigger["metadata"]["queueName"]
    assert set(scaled) == KEDA_SCALED
    for stage, queue in scaled.items():
        assert queue in queues.WORK_QUEUES
        assert consumed_queues[stage] == [queue], f"the {stage} consumes {consumed_queues[stage]}"


def test_every_mailroom_variable_is_a_setting(example: Manifests) -> None:
    for where, pod in pod_specs(example):
        for name in example.env(container(pod)):
            if name.startswith("MAILROOM_"):
                field = name.removeprefix("MAILROOM_").lower()
                assert field in Settings.model_fields, f"{where}: {name} is no setting"


# --- the workers' pods ----------------------------------------------------------------


def test_every_worker_has_probes_on_the_health_port(example: Manifests) -> None:
    for stage, deployment in example.deployments_by_stage().items():
        template = deployment["spec"]["template"]
        worker = container(template["spec"])
        (port,) = worker["ports"]
        assert (port["name"], port["containerPort"]) == ("http", HEALTH_PORT), stage
        env = example.env(worker)
        assert env["MAILROOM_HEALTH_PORT"] == str(HEALTH_PORT), stage
        # The kubelet and Prometheus come from outside the pod, not over its loopback.
        assert env["MAILROOM_HEALTH_HOST"] in ("0.0.0.0", "::"), stage
        for probe, path in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ]:
            get = worker[probe]["httpGet"]
            assert (get["path"], get["port"]) == (path, "http"), (stage, probe)
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(HEALTH_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_pod_has_limits_and_a_locked_down_context(example: Manifests) -> None:
    for where, pod in pod_specs(example):
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == 10001, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert not {"hostNetwork", "hostPID", "hostIPC", "hostname"} & set(pod), where
        c = container(pod)
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, where
        assert ctx["readOnlyRootFilesystem"] is True, where
        assert ctx["capabilities"]["drop"] == ["ALL"], where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (where, kind)
        writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        assert {"/tmp", "/var/lib/mailroom"} <= writable, where
        assert example.env(c)["MAILROOM_VAR_DIR"] == "/var/lib/mailroom", where


def test_a_stopping_worker_has_time_to_finish(example: Manifests) -> None:
    """A worker takes up to 10 s after SIGTERM; the kubelet must not kill it before."""
    for stage, deployment in example.deployments_by_stage().items():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 10, stage


def test_only_keda_sets_the_replicas_of_the_stages_it_scales(example: Manifests) -> None:
    """A fixed count would be put back by every `kubectl apply`, against the autoscaler."""
    for stage, deployment in example.deployments_by_stage().items():
        assert ("replicas" in deployment["spec"]) == (stage not in KEDA_SCALED), stage


def test_every_stage_has_a_disruption_budget(example: Manifests) -> None:
    budgets = example.of_kind("PodDisruptionBudget")
    for stage, deployment in example.deployments_by_stage().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(mine) == 1, stage
        # maxUnavailable: a drain is never blocked, even with one replica.
        assert mine[0]["spec"] == {"maxUnavailable": 1, "selector": mine[0]["spec"]["selector"]}


# --- secrets, settings and what refers to what ----------------------------------------


def refers_to(manifests: Manifests) -> Iterator[tuple[str, str, str, str | None]]:
    """(who, kind, name, key) of every object (and key in it) that a manifest names."""
    for where, pod in pod_specs(manifests):
        c = container(pod)
        for source in c.get("envFrom", []):
            for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if ref in source:
                    yield where, kind, source[ref]["name"], None
        for volume in pod.get("volumes", []):
            for field, kind, name_key in (
                ("configMap", "ConfigMap", "name"),
                ("secret", "Secret", "secretName"),
            ):
                if field in volume:
                    for item in volume[field].get("items", [{"key": None}]):
                        yield where, kind, volume[field][name_key], item["key"]
    for auth in manifests.of_kind("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            yield (
                f"TriggerAuthentication {auth['metadata']['name']}",
                "Secret",
                ref["name"],
                ref["key"],
            )
    for obj in manifests.of_kind("ScaledObject"):
        who = f"ScaledObject {obj['metadata']['name']}"
        yield who, "Deployment", obj["spec"]["scaleTargetRef"]["name"], None
        for trigger in obj["spec"]["triggers"]:
            yield who, "TriggerAuthentication", trigger["authenticationRef"]["name"], None


def assert_references_resolve(manifests: Manifests) -> None:
    for who, kind, name, key in refers_to(manifests):
        names = {d["metadata"]["name"] for d in manifests.of_kind(kind)}
        assert name in names, f"{who} names {kind} {name!r}, which is not among {names}"
        if key is not None:
            assert key in manifests.data(kind, name), f"{who} names key {key!r} of {name}"


def test_every_object_a_manifest_names_is_in_the_example(example: Manifests) -> None:
    assert_references_resolve(example)


def test_names_still_agree_under_a_name_prefix(tmp_path: Path) -> None:
    """An overlay's namePrefix renames the KEDA kinds' targets too (kustomizeconfig.yaml)."""
    prefixed = Manifests(render_prefixed(EXAMPLE, tmp_path, "staging-"))
    assert all(d["metadata"]["name"].startswith("staging-") for d in prefixed.docs[1:])
    assert_references_resolve(prefixed)


def secret_env(example: Manifests) -> dict[str, str]:
    (name,) = [
        d["metadata"]["name"]
        for d in example.of_kind("Secret")
        if "MAILROOM_BROKER_URL" in example.data("Secret", d["metadata"]["name"])
    ]
    return example.data("Secret", name)


def test_every_worker_gets_the_broker_the_store_and_the_key(example: Manifests) -> None:
    for where, pod in pod_specs(example):
        c = container(pod)
        env = example.env(c)
        assert env["MAILROOM_BROKER_URL"].startswith("amqp"), where
        assert env["MAILROOM_DATABASE_URL"].startswith("postgresql"), where
        kind, name, key, read_only = mounted_file(pod, env["MAILROOM_SECRET_KEY_FILE"])
        assert kind == "Secret" and read_only, where
        assert key in example.data(kind, name), where


def test_passwords_are_only_in_secrets(example: Manifests) -> None:
    for config_map in example.of_kind("ConfigMap"):
        for key, value in example.data("ConfigMap", config_map["metadata"]["name"]).items():
            assert "REPLACE" not in value, (config_map["metadata"]["name"], key)
            assert key not in SECRET_SETTINGS, config_map["metadata"]["name"]


def test_the_example_secrets_are_placeholders_that_say_so(example: Manifests) -> None:
    for secret in example.of_kind("Secret"):
        for key, value in example.data("Secret", secret["metadata"]["name"]).items():
            assert "REPLACE" in value, f"{secret['metadata']['name']}: {key} is no placeholder"


def test_the_example_settings_are_valid_with_the_secret_variables_alone(
    example: Manifests, tmp_path: Path
) -> None:
    job = example.named("Job", "mailroom-migrate")
    pod = job["spec"]["template"]["spec"]
    kind, name, key, _ = mounted_file(pod, SETTINGS_FILE)
    assert kind == "ConfigMap" and key is not None
    text = example.data(kind, name)[key]
    (tmp_path / "settings.yaml").write_text(text)
    # Only the Secret's variables: a ${NAME} it lacks would stop the Job.
    parsed = load_settings_file(tmp_path / "settings.yaml", env=secret_env(example))
    assert parsed.helpdesks[0].mailboxes


# --- the migration Job ----------------------------------------------------------------


def test_the_migration_job_migrates_and_applies_the_mounted_settings(example: Manifests) -> None:
    job = example.named("Job", "mailroom-migrate")
    spec: dict[str, Any] = job["spec"]
    pod = spec["template"]["spec"]
    c = container(pod)
    assert c["args"] == ["migrate", "--config", SETTINGS_FILE]
    kind, name, key, read_only = mounted_file(pod, SETTINGS_FILE)
    assert read_only and key in example.data(kind, name)
    # Retried a bounded number of times, then gone, so that the next apply runs it again.
    assert 0 < spec["backoffLimit"] <= 6
    assert spec["ttlSecondsAfterFinished"] > 0
    assert pod["restartPolicy"] in ("OnFailure", "Never")


# --- the admin page -------------------------------------------------------------------


def test_the_admin_page_runs_once_on_its_own_port_with_probes_on_healthz(
    example: Manifests,
) -> None:
    deployment = example.admin_page()
    spec = deployment["spec"]
    page = container(spec["template"]["spec"])
    env = example.env(page)
    # One pod, never two, even during a rollout: a consent in flight is in its memory.
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    (port,) = page["ports"]
    assert (port["name"], str(port["containerPort"])) == ("http", env["MAILROOM_ADMIN_PORT"])
    # The kubelet and the Service come from outside the pod, not over its loopback.
    assert env["MAILROOM_ADMIN_HOST"] in ("0.0.0.0", "::")
    # Cookies stay Secure: the page sits behind TLS.
    assert "MAILROOM_ADMIN_COOKIE_SECURE" not in env
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = page[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", "http"), probe
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 0


def test_the_admin_service_reaches_the_admin_pod_alone(example: Manifests) -> None:
    (service,) = example.of_kind("Service")
    deployment = example.admin_page()
    selector = service["spec"]["selector"]
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, "http")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    for other in example.of_kind("Deployment"):
        if other is not deployment:
            assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
