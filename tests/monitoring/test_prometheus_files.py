"""promtool checks and dashboard lint: the files are valid and use the metrics the code exports."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.fixtures.monitoring import (
    DASHBOARD_DIR,
    PROMETHEUS_DIR,
    REPO,
    alert_rules,
    dashboard_queries,
    require_binary,
)
from ticketflow.monitoring.drift_metrics import MonitorMetrics
from ticketflow.monitoring.metrics import WorkerMetrics

pytestmark = pytest.mark.unit

PROVISIONING = REPO / "monitoring" / "grafana" / "provisioning"


def exported_names() -> set[str]:
    """Every sample name the worker and the monitor can export, plus Prometheus' own ``up``."""
    names = {"up"}
    for metrics in (WorkerMetrics(), MonitorMetrics()):
        for family in metrics.registry.collect():
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
        ["check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
        ["test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: list[str]) -> None:
    promtool = require_binary("promtool")
    run = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=PROMETHEUS_DIR)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_query_uses_exported_metrics() -> None:
    names = exported_names()
    queries = dashboard_queries() + alert_rules()
    assert len(queries) > 30
    for where, expr in queries:
        used = set(re.findall(r"\b(?:ticketflow_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s)", expr))
        used |= set(re.findall(r"\bticketflow_[a-z_]+", expr))
        unknown = used - names
        assert not unknown, f"{where}: {unknown} are not exported"


def test_dashboards_use_the_provisioned_datasource() -> None:
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
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
    assert len(uids) == len(dashboards)
