"""deploy/monitoring: the alert rules pass promtool, fire when they should and only then, and
the alerts and the Grafana dashboard use only metrics that Mailroom really exports."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from servers import find_binary

from services.cli.monitoring import Monitoring
from services.pipeline import BUILDERS
from services.runtime import tables
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.store import Store

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

#: The names and labels the alert rules, the dashboard and the Kubernetes manifests rely on.
INTERFACE = {
    "mailroom_mails_handled": ("counter", {"stage", "outcome"}),
    "mailroom_handling_seconds": ("histogram", {"stage"}),
    "mailroom_dead_letters": ("counter", {"stage"}),
    "mailroom_mailbox_last_success_timestamp_seconds": ("gauge", {"helpdesk", "mailbox"}),
    "mailroom_mailbox_consecutive_failures": ("gauge", {"helpdesk", "mailbox"}),
    "mailroom_mailbox_error_folder_mails": ("gauge", {"helpdesk", "mailbox"}),
    "mailroom_mailbox_fetching": ("gauge", {"helpdesk", "mailbox"}),
    "mailroom_mailbox_stopped_by_errors": ("gauge", {"helpdesk", "mailbox"}),
    "mailroom_outbox_pending": ("gauge", set()),
    "mailroom_outbox_given_up": ("gauge", set()),
    "mailroom_dead_letter_entries": ("gauge", set()),
}
#: What Grafana puts into an expression before Prometheus sees it.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return find_binary("promtool", "prometheus")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a process running every stage, over a store with one polled mailbox."""
    folder = tmp_path_factory.mktemp("scraped")
    store = Store(f"sqlite:///{folder / 'mailroom.db'}")
    store.migrate()
    with store.transaction() as conn:
        conn.execute(
            tables.mailboxes.insert().values(
                name="inbox",
                helpdesk_id="support",
                protocol="imap",
                settings={},
                enabled=True,
                consecutive_failures=0,
                updated_at=datetime.now(UTC),
            )
        )
    MailboxHealth(store).record_poll("inbox", datetime.now(UTC), None)
    monitoring = Monitoring.of(BUILDERS)
    monitoring.watch(store)
    return generate_latest(monitoring.registry).decode()


@pytest.fixture(scope="module")
def exported(scraped: str) -> set[str]:
    """Every series name a scrape shows (``_total``, ``_bucket`` and the like included)."""
    return {s.name for f in text_string_to_metric_families(scraped) for s in f.samples}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["type"] != "row"]


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    return exprs + [v["query"]["query"] for v in board["templating"]["list"]]


def mailroom_names(expr: str) -> set[str]:
    return set(re.findall(r"\bmailroom_[a-z0-9_]+\b", expr))


def as_prometheus(expr: str) -> str:
    """A dashboard expression as Prometheus would get it: Grafana's variables filled in."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr.replace("$helpdesk", ".*")


def test_every_metric_other_parts_rely_on_is_exported_with_its_labels(scraped: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(scraped)}

    for name, (kind, labels) in INTERFACE.items():
        assert name in families, f"{name} is not exported"
        family = families[name]
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        assert family.samples, f"{name} has no samples"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)


def test_the_alert_rules_pass_promtool(promtool: Path) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", ALERTS], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_each_alert_fires_on_failing_series_and_never_on_healthy_ones(promtool: Path) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_tests_cover_every_alert_both_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        name = rule["alert"]
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == name]
        assert True in outcomes, f"no test shows {name} firing"
        assert False in outcomes, f"no test shows {name} staying quiet"


def test_each_alert_says_how_bad_it_is_and_what_to_run(exported: set[str]) -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        description = rule["annotations"]["description"]
        assert re.search(r"`mailroom [a-z]", description), f"{name} names no command to run"
        assert mailroom_names(rule["expr"]) <= exported, name


def test_the_dashboard_is_importable_with_a_prometheus_data_source_of_choice() -> None:
    board = json.loads(DASHBOARD.read_text())

    assert board["schemaVersion"] >= 36
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    for panel in dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_shows_only_metrics_the_workers_export(exported: set[str]) -> None:
    for expr in dashboard_expressions():
        names = mailroom_names(expr)
        assert names, f"{expr!r} reads no Mailroom metric"
        assert names <= exported, f"{expr!r} reads {names - exported}, which nothing exports"


def test_the_dashboard_shows_every_metric_of_the_interface() -> None:
    shown = set().union(*map(mailroom_names, dashboard_expressions()))
    quantiles = [e for e in dashboard_expressions() if "histogram_quantile" in e]

    for name, (kind, _) in INTERFACE.items():
        suffix = {"counter": "_total", "histogram": "_bucket"}.get(kind, "")
        assert name + suffix in shown, f"no panel shows {name}"
    assert any("0.5," in e for e in quantiles) and any("0.95," in e for e in quantiles)


def test_the_dashboard_queries_are_valid_promql(promtool: Path, tmp_path: Path) -> None:
    # promtool parses every expression of a rule file: the queries become recording rules.
    rules = [
        {"record": f"dashboard:query{i}", "expr": as_prometheus(expr)}
        for i, expr in enumerate(dashboard_expressions())
        if not expr.startswith("label_values(")  # Grafana's own function, not PromQL
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    done = subprocess.run(
        [promtool, "check", "rules", path], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
