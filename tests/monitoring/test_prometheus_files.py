"""promtool checks and dashboard lint: the files are valid and use the metrics the code exports.

The alert rules are tested twice: under the labels of the local prometheus.yml
(alerts_test.yml) and, as the PrometheusRule of k8s/components/prometheus-operator, under the
labels the Prometheus Operator gives (alerts_kube_test.yml).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.fixtures.monitoring import (
    DASHBOARD_DIR,
    PROMETHEUS_DIR,
    REPO,
    alert_rules,
    dashboard_queries,
    require_binary,
)
from ticketflow.monitoring.drift_metrics import MonitorMetrics
from ticketflow.serve.desk import DeskMetrics
from ticketflow.stream.metrics import WorkerMetrics

pytestmark = pytest.mark.unit

PROVISIONING = REPO / "monitoring" / "grafana" / "provisioning"
PROMETHEUS_RULE = REPO / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"


# serve's review-desk metrics: serve pods, not the workers the dashboards' $pod lists.
SERVE_METRICS = ("ticketflow_review_queue_", "ticketflow_review_answers_")


def exported_names() -> set[str]:
    """Every sample name the worker, the monitor and serve's review desk can export, plus
    Prometheus' own ``up``."""
    names = {"up"}
    desk = CollectorRegistry()
    DeskMetrics(desk)
    for registry in (WorkerMetrics().registry, MonitorMetrics().registry, desk):
        for family in registry.collect():
            names.add(family.name)
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
            }.get(family.type, [""])
            names.update(family.name + s for s in suffixes)
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["check", "config", str(REPO / "docker" / "prometheus.compose.yml")],
        ["check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
        ["test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")],
        ["test", "rules", str(PROMETHEUS_DIR / "alerts_kube_test.yml")],
    ],
    ids=["check-config", "check-compose-config", "check-rules", "test-rules", "test-rules-kube"],
)
def test_promtool(args: list[str], tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    cwd = PROMETHEUS_DIR
    if args[-1].endswith("prometheus.compose.yml"):
        # compose mounts alerts.yml next to it; promtool resolves rule_files from the config
        cwd = tmp_path
        (tmp_path / "alerts.yml").write_text((PROMETHEUS_DIR / "alerts.yml").read_text())
        (tmp_path / "prometheus.yml").write_text(Path(args[-1]).read_text())
        args = [*args[:-1], str(tmp_path / "prometheus.yml")]
    run = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_on_the_prometheus_rule_under_operator_labels(tmp_path: Path) -> None:
    """The PrometheusRule's own rules (not alerts.yml) through alerts_kube_test.yml."""
    promtool = require_binary("promtool")
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "alerts_kube_test.yml").read_text())
    tests["rule_files"] = ["rules.yml"]
    (tmp_path / "kube_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "kube_test.yml"]):
        run = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_tested_locally_and_under_operator_labels() -> None:
    alerts = {name for name, _ in alert_rules()}
    for name in ("alerts_test.yml", "alerts_kube_test.yml"):
        tests = yaml.safe_load((PROMETHEUS_DIR / name).read_text())["tests"]
        fired = {
            case["alertname"]
            for test in tests
            for case in test.get("alert_rule_test", [])
            if case.get("exp_alerts")
        }
        assert fired == alerts, f"{name}: alerts never seen firing: {alerts - fired}"


def test_alerts_never_select_on_the_job_label() -> None:
    """`job` is ticketflow-worker locally and ticketflow-worker-metrics under the operator."""
    for name, expr in alert_rules():
        assert "job" not in re.findall(r"\b(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr), name
    for where, expr in dashboard_queries():
        assert "job=" not in expr and "job=~" not in expr, where


def test_every_query_uses_exported_metrics() -> None:
    names = exported_names()
    queries = dashboard_queries() + alert_rules()
    assert len(queries) > 30
    for where, expr in queries:
        used = set(re.findall(r"\b(?:ticketflow_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s)", expr))
        used |= set(re.findall(r"\bticketflow_[a-z_]+", expr))
        unknown = used - names
        assert not unknown, f"{where}: {unknown} are not exported"


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_dashboards_use_the_datasource_variable_defaulting_to_the_provisioned_one() -> None:
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "ticketflow.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    dashboards = sorted(DASHBOARD_DIR.glob("*.json"))
    assert {p.stem for p in dashboards} == {"ticketflow-pipeline", "ticketflow-drift"}
    uids = set()
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path
        variable = variables(dashboard)["datasource"]
        assert variable["type"] == "datasource" and variable["query"] == "prometheus"
        assert variable["current"]["value"] == uid, path.name
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
    assert len(uids) == len(dashboards)


def test_dashboards_filter_by_namespace_and_pod_with_grafana_rate_windows() -> None:
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        found = variables(dashboard)
        for name in ("namespace", "pod"):
            # All = `.*`, which also matches the series without the label (outside Kubernetes)
            assert found[name]["includeAll"] and found[name]["allValue"] == ".*", (path, name)
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                where, expr = f"{path.name}: {panel['title']}", target["expr"]
                # every series selector is filtered, not only the first
                bare = re.findall(r"\b(?:(?:ticketflow|process|kube)_[a-z_]+|up)\b(?!\{)", expr)
                assert not bare, (where, bare)
                for matchers in re.findall(r"\b[a-z_]+\{([^}]*)\}", expr):
                    assert 'namespace=~"$namespace"' in matchers, where
                    # the monitor's figure and serve's: $pod lists worker pods
                    if "consumergroup_lag" not in expr and not any(
                        m in expr for m in SERVE_METRICS
                    ):
                        assert 'pod=~"$pod"' in matchers, where
                # Grafana's window: at least 4 scrape intervals at any zoom
                for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expr):
                    assert window == "$__rate_interval", where


def test_dashboards_show_cpu_memory_and_restarts_per_pod() -> None:
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        exprs = [t["expr"] for p in json.loads(path.read_text())["panels"] for t in p["targets"]]
        for metric in (
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "kube_pod_container_status_restarts_total",
        ):
            assert any(metric in e and "by (pod" in e for e in exprs), (path.name, metric)
