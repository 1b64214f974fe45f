"""The Kubernetes manifests as each overlay renders them (the kustomize that .ci/lint-deploy
caches), checked for what kubeconform cannot see: where the containers write, that the
overlays reach every workload, and that monitoring and autoscaling watch the right things.

    python -m tests.test_deploy    rewrites the PrometheusRule from monitoring/prometheus/alerts.yml
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from ticketflow.config import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = sorted(p.parent for p in (REPO / "k8s" / "overlays").glob("*/kustomization.yaml"))
ALERTS = REPO / "monitoring" / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = REPO / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"

# The commands that train, retrain, promote or watch models: they need the registry and the
# drift reference sets on a volume (the monitor only reads them).
MODEL_COMMANDS = {"train", "retrain", "models", "monitor", "drift"}
MODEL_PATHS = ("MODEL_REGISTRY_DIR", "DRIFT_REFERENCE_DIR")
# What each command writes, besides the caches every process may write.
WRITES = {
    "train": {"MODEL_REGISTRY_DIR", "DRIFT_REFERENCE_DIR"},
    "retrain": {"MODEL_REGISTRY_DIR", "RETRAIN_REPORT_DIR"},
    "models": {"MODEL_REGISTRY_DIR"},
    "drift": {"DRIFT_REFERENCE_DIR", "DRIFT_REPORT_DIR"},
    "monitor": {"DRIFT_REPORT_DIR"},
    "worker": set(),
}
CACHES = {"STATE_DIR", "CACHE_DIR", "HF_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME"}
PROMETHEUS_RULE_HEADER = """\
# GENERATED from monitoring/prometheus/alerts.yml (the rules, unchanged): edit that file, then
#   python -m tests.test_deploy
# tests/test_deploy.py fails while the two differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ticketflow
  labels:
    app.kubernetes.io/name: ticketflow
spec:
"""


def kustomize() -> str:
    tools = os.environ.get("TOOLS_DIR") or str(Path.home() / ".cache" / "ticketflow" / "tools")
    binary = Path(tools).expanduser() / "bin" / "kustomize"
    if not binary.is_file():
        pytest.fail(f"{binary} not found: run .ci/lint-deploy (installs it)", pytrace=False)
    return str(binary)


@cache
def rendered(overlay: Path) -> tuple[dict[str, Any], ...]:
    run = subprocess.run(
        [kustomize(), "build", str(overlay)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    return tuple(d for d in yaml.safe_load_all(run.stdout) if d)


def overlay_settings(overlay: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    return found


@cache
def image_env() -> dict[str, str]:
    """ENV of the images' shared stage (docker/Dockerfile `AS base`), and its WORKDIR."""
    text = (REPO / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    in_base = False
    for line in text.splitlines():
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            in_base = line.rstrip().endswith(" AS base")
        elif in_base and words[0] == "ENV":
            for pair in shlex.split(words[1]):
                key, _, value = pair.partition("=")
                env[key] = value
        elif in_base and words[0] == "WORKDIR":
            env["WORKDIR"] = words[1].strip()
    return env


@dataclass(frozen=True)
class Mount:
    path: PurePosixPath
    writable: bool


@dataclass(frozen=True)
class Container:
    where: str
    kind: str
    pod: dict[str, Any]
    spec: dict[str, Any]
    owner: dict[str, Any]

    @property
    def command(self) -> str:
        args = self.spec.get("args") or ["worker"]  # the worker image's CMD
        return str(args[0])

    @property
    def read_only_root(self) -> bool:
        return bool((self.spec.get("securityContext") or {}).get("readOnlyRootFilesystem"))

    def env(self, configmaps: dict[str, dict[str, str]]) -> dict[str, str]:
        env = dict(image_env())
        for source in self.spec.get("envFrom") or []:
            if "configMapRef" in source:
                env.update(configmaps[source["configMapRef"]["name"]])
        for item in self.spec.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
        return env

    def mounts(self) -> list[Mount]:
        volumes = {v["name"]: v for v in self.pod.get("volumes") or []}
        templates = {
            t["metadata"]["name"]
            for t in self.owner.get("spec", {}).get("volumeClaimTemplates", [])
        }
        found = []
        for mount in self.spec.get("volumeMounts") or []:
            volume = volumes.get(mount["name"], {})
            assert volume or mount["name"] in templates, (self.where, mount["name"])
            claim_read_only = (volume.get("persistentVolumeClaim") or {}).get("readOnly", False)
            writable = not mount.get("readOnly", False) and not claim_read_only
            found.append(Mount(PurePosixPath(mount["mountPath"]), writable))
        return found


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template")
    return template["spec"] if template else None


def containers(docs: tuple[dict[str, Any], ...]) -> Iterator[Container]:
    for doc in docs:
        pod = pod_spec(doc)
        if pod is None:
            continue
        for spec in [*(pod.get("initContainers") or []), *pod["containers"]]:
            where = f"{doc['kind']}/{doc['metadata']['name']} container {spec['name']}"
            yield Container(where, doc["kind"], pod, spec, doc)


def configmaps(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}


def path_setting(name: str, env: dict[str, str]) -> PurePosixPath | None:
    """The path a process in the container uses for setting ``name`` (None: not a path)."""
    if name in env:
        value = env[name]
    else:
        field = Settings.model_fields.get(name.lower())
        if field is None or not isinstance(field.default, Path):
            return None
        value = str(field.default)
    path = PurePosixPath(value)
    return path if path.is_absolute() else PurePosixPath(image_env()["WORKDIR"]) / path


def under(path: PurePosixPath, mounts: list[Mount], *, writable: bool) -> bool:
    return any(path.is_relative_to(m.path) and (m.writable or not writable) for m in mounts)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_model_containers_keep_registry_and_reference_on_volumes(overlay: Path) -> None:
    docs = rendered(overlay)
    maps = configmaps(docs)
    commands = set()
    for container in containers(docs):
        if container.command not in MODEL_COMMANDS:
            continue
        commands.add(container.command)
        env, mounts = container.env(maps), container.mounts()
        for name in MODEL_PATHS:
            path = path_setting(name, env)
            assert path is not None and under(path, mounts, writable=False), (
                f"{overlay.name}: {container.where}: {name}={path} is on no mounted volume "
                f"(mounts: {[str(m.path) for m in mounts]})"
            )
    # the first model (train), retraining and the drift monitor are all deployed
    assert {"train", "retrain", "monitor"} <= commands, commands


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_read_only_root_containers_write_only_to_writable_volumes(overlay: Path) -> None:
    docs = rendered(overlay)
    maps = configmaps(docs)
    checked = 0
    for container in containers(docs):
        if not container.read_only_root:
            continue
        env, mounts = container.env(maps), container.mounts()
        writes = set(CACHES) | WRITES.get(container.command, set())
        if container.command in WRITES and "CHROMA_HOST" not in env:
            writes.add("CHROMA_PATH")  # the embedded vector store
        for name in sorted(writes):
            path = path_setting(name, env)
            if path is None:
                continue
            checked += 1
            assert under(path, mounts, writable=True), (
                f"{overlay.name}: {container.where} ({container.command}) writes {name}={path}, "
                f"not on a writable volume (mounts: {mounts})"
            )
    assert checked > 20


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlay_namespace_and_image_tags_reach_every_object(overlay: Path) -> None:
    settings = overlay_settings(overlay)
    tags = {i["name"]: i["newTag"] for i in settings.get("images", [])}
    docs = rendered(overlay)
    for doc in docs:
        where = f"{overlay.name}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == settings["namespace"], where
    for container in containers(docs):
        image = container.spec["image"]
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{overlay.name}: {container.where}: {image}"
        if name in tags:
            assert tag == tags[name], f"{overlay.name}: {container.where}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_retraining_cronjobs_never_overlap(overlay: Path) -> None:
    cronjobs = [d for d in rendered(overlay) if d["kind"] == "CronJob"]
    retraining = [
        d for d in cronjobs if any(c.command in {"train", "retrain"} for c in containers((d,)))
    ]
    assert len(retraining) >= 3, [d["metadata"]["name"] for d in cronjobs]
    for doc in retraining:
        assert doc["spec"]["concurrencyPolicy"] == "Forbid", doc["metadata"]["name"]


def test_first_model_cronjob_is_a_template_that_never_runs_by_itself() -> None:
    for overlay in OVERLAYS:
        train = [
            d
            for d in rendered(overlay)
            if d["kind"] == "CronJob" and any(c.command == "train" for c in containers((d,)))
        ]
        assert [d["metadata"]["name"] for d in train] == ["ticketflow-train"], overlay.name
        assert train[0]["spec"]["suspend"] is True, overlay.name


def prometheus_rule_text() -> str:
    alerts = ALERTS.read_text()
    body = alerts[alerts.index("groups:") :]
    indented = "".join("  " + line if line.strip() else line for line in body.splitlines(True))
    return PROMETHEUS_RULE_HEADER + indented


def test_prometheus_rule_has_the_rules_of_alerts_yml() -> None:
    shipped = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert shipped["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], (
        f"{PROMETHEUS_RULE.relative_to(REPO)} differs from {ALERTS.relative_to(REPO)}: "
        "run python -m tests.test_deploy"
    )
    assert PROMETHEUS_RULE.read_text() == prometheus_rule_text(), "run python -m tests.test_deploy"


def alert_selector_values(label: str) -> set[str]:
    exprs = [
        r["expr"]
        for g in yaml.safe_load(ALERTS.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    return {v for e in exprs for v in re.findall(rf'\b{label}="([^"]+)"', e)}


def with_serve(overlay: Path, tmp_path: Path) -> Path:
    """A kustomization of ``overlay`` plus the optional serve component (the HTTP API)."""
    root = tmp_path / f"{overlay.name}-with-serve"
    root.mkdir()
    serve = REPO / "k8s" / "components" / "serve"
    namespace = overlay_settings(overlay)["namespace"]
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                # kustomize takes only relative paths to other kustomizations
                "resources": [os.path.relpath(overlay, root)],
                "components": [os.path.relpath(serve, root)],
            }
        )
    )
    return root


def test_prod_is_monitored_by_the_prometheus_operator(tmp_path: Path) -> None:
    """Workers, the drift monitor and, where an overlay adds it, the HTTP API (serve)."""
    docs = rendered(with_serve(REPO / "k8s" / "overlays" / "prod", tmp_path))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert len(by_kind["PrometheusRule"]) == 1
    assert (
        by_kind["PrometheusRule"][0]["spec"]["groups"]
        == (yaml.safe_load(ALERTS.read_text())["groups"])
    )
    pod_labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in by_kind["Deployment"]
    }
    pod_ports = {
        d["metadata"]["name"]: {
            p["name"] for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        for d in by_kind["Deployment"]
    }

    def selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    names_seen = set()
    (service_monitor,) = by_kind["ServiceMonitor"]
    services = [
        s
        for s in by_kind["Service"]
        if selected(service_monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in services] == ["ticketflow-worker-metrics"]
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} <= {
        p["name"] for p in services[0]["spec"]["ports"]
    }
    podmonitors = by_kind["PodMonitor"]
    assert len(podmonitors) == 2
    for monitor, selector in (
        (service_monitor, services[0]["spec"]["selector"]),
        *((p, p["spec"]["selector"]["matchLabels"]) for p in podmonitors),
    ):
        # the label the alerts select workers and the monitor by comes from the pods
        assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/name"]
        pods = [n for n, labels in pod_labels.items() if selected(selector, labels)]
        assert len(pods) == 1, (monitor["metadata"]["name"], pods)
        names_seen.add(pod_labels[pods[0]]["app.kubernetes.io/name"])
        if monitor["kind"] == "PodMonitor":
            ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
            assert ports <= pod_ports[pods[0]]
    assert names_seen == {"ticketflow-worker", "ticketflow-monitor", "ticketflow-serve"}
    assert alert_selector_values("app_kubernetes_io_name") == {
        "ticketflow-worker",
        "ticketflow-monitor",
    }
    # The serve PodMonitor sends no token: serve's /metrics must be open (behind its
    # NetworkPolicy), else every scrape is a 401.
    (serve_monitor,) = [p for p in podmonitors if p["metadata"]["name"] == "ticketflow-serve"]
    assert "authorization" not in serve_monitor["spec"]["podMetricsEndpoints"][0]
    (serve,) = [d for d in by_kind["Deployment"] if d["metadata"]["name"] == "ticketflow-serve"]
    env = {
        e["name"]: e.get("value") for e in serve["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SERVE_METRICS_PUBLIC"] == "true"


def test_keda_scales_on_the_workers_group_lag_from_the_broker() -> None:
    docs = rendered(REPO / "k8s" / "overlays" / "prod")
    config = configmaps(docs)["ticketflow-config"]
    (scaled,) = [d for d in docs if d["kind"] == "ScaledObject"]
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    trigger = triggers["kafka"]
    # the kafka scaler reads committed vs log-end offsets itself: never a worker's own gauge
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == config["WORKER_APP_ID"]
    assert trigger["metadata"]["topic"] == config["KAFKA_TOPIC_TICKETS"]
    assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert scaled["spec"]["maxReplicaCount"] <= int(config["KAFKA_TOPIC_PARTITIONS"])
    # the only other trigger: the workers' CPU (they request 1 CPU each), never a gauge of theirs
    assert set(triggers) == {"kafka", "cpu"}
    assert triggers["cpu"]["metricType"] == "Utilization"


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(prometheus_rule_text())
    print(f"wrote {PROMETHEUS_RULE.relative_to(REPO)}", file=sys.stderr)
