"""A real Prometheus scrapes a real worker, a real monitor and a real ``ticketflow serve``
(the review desk's gauges and answers; with a tokens file, Prometheus reading its bearer token
from a file as monitoring/prometheus/prometheus.yml says) while tickets flow. Worker and serve
share a ChromaDB server, as in production; agents answer some tickets on ``ticket-feedback``
directly and some through serve's ``POST /v1/feedback``.

Then every PromQL expression of every dashboard panel (its template variables substituted
the way Grafana does) and alert rule is sent to Prometheus' HTTP API and must return data;
alerts that can only fire on a failure are listed in ``FIRES_ONLY_ON_FAILURE`` with a probe
expression (their inputs) that must return data, and the few panel queries that cannot have
data here are in ``NO_DATA_HERE``, each with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest

from tests.fixtures.chroma import ChromaServer
from tests.fixtures.monitoring import (
    REPO,
    PrometheusServer,
    ServeScrape,
    ServiceProcess,
    alert_rules,
    dashboard_queries,
    grafana_expr,
    monitor_factory,  # noqa: F401  (fixture)
    prometheus_factory,  # noqa: F401  (fixture)
)
from tests.fixtures.pipeline import WorkerProcess
from ticketflow.adapters.kafka.clients import consume, produce_events, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets
from ticketflow.schemas import DriftEvent, LabelFeedback

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

WINDOW = 100
IN_DISTRIBUTION = 300  # 3 windows
SHIFTED = 200  # 2 windows
SHIFTED_QUEUES = {"Billing and Payments", "Returns and Exchanges"}
REVIEWED = 60  # in-distribution tickets agents label (the correction panels and alert)
DESK_ANSWERS = 10  # more of them, answered through serve's API (the review desk panels)
DESK_TOKEN = "desk-integration-token-0123456789"
PROMETHEUS_TOKEN = "prometheus-scrape-token-0123456789"
CLI = [sys.executable, "-m", "ticketflow"]

# Alert -> an expression over the same inputs that must return data in a healthy system.
FIRES_ONLY_ON_FAILURE = {
    "TicketflowWorkerDown": 'up{app_kubernetes_io_name="ticketflow-worker"}',
    "TicketflowMonitorDown": 'up{app_kubernetes_io_name="ticketflow-monitor"}',
    "TicketflowWorkerMetricsAbsent": "ticketflow_worker_ready",
    "TicketflowMonitorMetricsAbsent": "ticketflow_drift_windows_total",
    "TicketflowDriftWindowsSkipped": (
        "sum by (namespace, instance)"
        ' (ticketflow_monitor_records_skipped_total{reason="no_reference"})'
    ),
    "TicketflowConsumerLagUnknown": "ticketflow_consumergroup_lag_read_errors_total",
    "TicketflowConsumerLagGrowing": (
        "sum by (namespace, group, topic) (delta(ticketflow_consumergroup_lag[5m]))"
    ),
    "TicketflowDeadLetterSpike": (
        "sum by (namespace) (rate(ticketflow_tickets_dead_lettered_total[5m]))"
        " / clamp_min(sum by (namespace) (rate(ticketflow_tickets_consumed_total[5m])), 1e-9)"
    ),
    "TicketflowNoThroughput": (
        "sum by (namespace, group, topic) (ticketflow_consumergroup_lag)"
        " and on (namespace) sum by (namespace) (rate(ticketflow_tickets_labeled_total[10m]))"
    ),
    # needs 100 labels people gave in a day, most of them changes
    "TicketflowCorrectionRateHigh": (
        "sum by (namespace, target) (increase(ticketflow_corrections_total[1d]))"
    ),
    # needs more than 100 held tickets, growing for 12 h; about 20 of 500 are held here
    "TicketflowReviewQueueGrowing": "max by (namespace) (ticketflow_review_queue_held)",
    # needs a burst of close tickets and INCIDENTS_ENABLED (off here): the gauge is 0
    "TicketflowIncidentOpen": "sum by (namespace) (ticketflow_incidents_open)",
}

# Panel queries (dashboard_queries' "where") that cannot return data outside Kubernetes, and
# why. Every other panel query must.
NO_DATA_HERE = {
    "ticketflow-pipeline.json: Worker restarts per pod (last hour) [A]": (
        "kube_pod_container_status_restarts_total comes from kube-state-metrics, which exists "
        "only in a cluster; this test runs processes, not pods"
    ),
    "ticketflow-drift.json: Monitor restarts (last hour) [A]": (
        "kube_pod_container_status_restarts_total comes from kube-state-metrics, which exists "
        "only in a cluster; this test runs processes, not pods"
    ),
}


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, diagnose: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}\n{diagnose()}")


def metric(prometheus: PrometheusServer, expr: str) -> float:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def start_serve(env: dict[str, str], tmp_path: Path) -> tuple[ServiceProcess, str, ServeScrape]:
    """``ticketflow serve`` with a tokens file: the desk's caller and Prometheus' own line."""
    tokens = tmp_path / "serve-tokens"
    tokens.write_text(f"desk:{DESK_TOKEN}\nprometheus:{PROMETHEUS_TOKEN}\n")
    credentials = tmp_path / "prometheus-serve.token"
    credentials.write_text(PROMETHEUS_TOKEN + "\n")  # Prometheus trims the newline
    credentials.chmod(0o400)
    port = free_port()
    serve = ServiceProcess(
        argv=[*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "SERVE_TOKENS_FILE": str(tokens)},
        log=tmp_path / "serve.log",
    )
    serve.start()
    return serve, f"http://127.0.0.1:{port}", ServeScrape(port, credentials)


def serve_ready(serve: ServiceProcess, url: str) -> bool:
    assert serve.alive(), serve.tail()
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_prometheus_scrapes_worker_monitor_and_serve_and_every_query_has_data(
    worker_env: dict[str, str],
    kafka_config: dict[str, str],
    tmp_path: Path,
    chroma_server: ChromaServer,
    prometheus_factory: Any,  # noqa: F811
    monitor_factory: Any,  # noqa: F811
) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **worker_env,
        **chroma_server.env(),  # worker and serve share the store
        "KAFKA_TOPIC_MONITOR": f"t-monitoring-{suffix}",
        "KAFKA_TOPIC_DRIFT": f"t-drift-events-{suffix}",
        "KAFKA_TOPIC_FEEDBACK": f"t-feedback-{suffix}",
        "MONITOR_APP_ID": f"ticketflow-monitor-{suffix}",
        "MONITOR_METRICS_PORT": str(free_port()),
        "DRIFT_WINDOW_SIZE": str(WINDOW),
        "DRIFT_WINDOW_SECONDS": "600",
        "DRIFT_MIN_WINDOW": "30",
        "DRIFT_REFERENCE_DIR": str(tmp_path / "reference"),
        "DRIFT_REPORT_DIR": str(tmp_path / "reports"),
        "DRIFT_REPORT_MIN_INTERVAL_S": "3600",
    }
    # 1. The reference set of the current model, from a fresh labelled sample.
    reference_data = tmp_path / "reference.jsonl"
    cli = [sys.executable, "-m", "ticketflow"]
    subprocess.run(
        [*cli, "sample", "--n", "400", "--seed", "1001", "--out", str(reference_data)],
        check=True,
        env=env,
        cwd=REPO,
    )
    subprocess.run(
        [*cli, "drift", "reference", "--data", str(reference_data)],
        check=True,
        env=env,
        cwd=REPO,
    )

    # 2. Worker, monitor, serve and Prometheus.
    create_topics(kafka_config, [env["KAFKA_TOPIC_FEEDBACK"]], partitions=1, replication=1)
    worker = WorkerProcess(env=env, log=tmp_path / "worker.log", port=int(env["METRICS_PORT"]))
    worker.start()
    monitor: ServiceProcess = monitor_factory(env)
    serve, serve_url, serve_scrape = start_serve(env, tmp_path)
    prometheus: PrometheusServer = prometheus_factory(
        int(env["METRICS_PORT"]), int(env["MONITOR_METRICS_PORT"]), serve_scrape
    )

    def diagnose() -> str:
        return (
            f"--- worker\n{worker.tail(30)}\n--- monitor\n{monitor.tail(30)}\n"
            f"--- serve\n{serve.tail(20)}\n--- prometheus\n{prometheus.tail(10)}"
        )

    try:
        worker.wait_ready()
        wait_for("serve ready", lambda: serve_ready(serve, serve_url), 240, diagnose)
        wait_for(
            "the three targets up",
            lambda: (
                prometheus.targets_up()
                == {"ticketflow-worker": "up", "ticketflow-monitor": "up", "ticketflow-serve": "up"}
            ),
            60,
            diagnose,
        )
        tickets = env["KAFKA_TOPIC_TICKETS"]

        # 3. In-distribution traffic (and a few broken events for the dead-letter panels).
        stream = generate_tickets(IN_DISTRIBUTION, seed=2002)
        for row in stream:
            row["ticket_id"] = f"in-{row['ticket_id']}"
        produce_events(kafka_config, tickets, stream, progress=False)
        produce_raw(kafka_config, tickets, [(None, b"{not json") for _ in range(3)])
        wait_for(
            "3 in-distribution windows",
            lambda: metric(prometheus, "sum(ticketflow_drift_windows_total)") >= 3,
            420,
            diagnose,
        )
        in_ok = metric(prometheus, 'sum(ticketflow_drift_windows_total{outcome="ok"})')
        in_events = metric(prometheus, "sum(ticketflow_drift_events_total)")
        # Agents label some of them with the generator's queue: a change where the model
        # was wrong, a confirmation where it was right (the correction panels).
        reviewed = [
            LabelFeedback(ticket_id=r["ticket_id"], labels={"queue": r["queue"]}, corrected_by="a")
            for r in stream[:REVIEWED]
        ]
        produce_raw(
            kafka_config,
            env["KAFKA_TOPIC_FEEDBACK"],
            [(f.ticket_id.encode(), f.model_dump_json().encode()) for f in reviewed],
        )
        # More of them through serve's API (published on the same topic), and one answer
        # it refuses (a target the model does not have).
        desk = {"Authorization": f"Bearer {DESK_TOKEN}"}
        with httpx.Client(base_url=serve_url, headers=desk, timeout=60) as client:
            for row in stream[REVIEWED : REVIEWED + DESK_ANSWERS]:
                body = {"ticket_id": row["ticket_id"], "labels": {"queue": row["queue"]}}
                answered = client.post("/v1/feedback", json=body)
                assert answered.status_code == 202, answered.text
            refused = {"ticket_id": stream[0]["ticket_id"], "labels": {"colour": "blue"}}
            assert client.post("/v1/feedback", json=refused).status_code == 422
        given = REVIEWED + DESK_ANSWERS
        wait_for(
            "the labels agents gave and the desk's answers, in Prometheus",
            lambda: (
                metric(prometheus, "sum(ticketflow_corrections_total)") >= given
                and metric(prometheus, "sum(ticketflow_review_answer_seconds_count)") >= given
                and metric(prometheus, 'sum(ticketflow_review_answers_total{result="published"})')
                >= DESK_ANSWERS
            ),
            120,
            diagnose,
        )
        # Every answer was its ticket's first, on a ticket the model labelled seconds ago.
        assert metric(prometheus, "sum(ticketflow_review_answer_seconds_count)") == given
        assert metric(prometheus, 'sum(ticketflow_review_answer_seconds_bucket{le="60.0"})') == (
            given
        )
        assert metric(prometheus, 'sum(ticketflow_review_answers_total{result="invalid"})') == 1
        # serve's gauge, scraped, is the store's count of held tickets nobody answered.
        chroma = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
        declared = chroma.get_collection("tickets").metadata
        store = ChromaVectorStore(
            chroma,
            "tickets",
            embedding_model=declared["embedding_model"],
            dimension=declared["dimension"],
        )
        with httpx.Client(base_url=serve_url, headers=desk, timeout=60) as client:

            def gauge_is_the_stores() -> bool:
                client.get("/v1/review", params={"limit": 1})  # at the desk: read every 2 s
                held = metric(prometheus, "sum(ticketflow_review_queue_held)")
                return held == len(store.held_ids())

            wait_for("serve's queue gauge to match the store", gauge_is_the_stores, 60, diagnose)
        print(f"held for review and unanswered: {len(store.held_ids())}")

        # 4. A shifted stream: only billing and returns tickets.
        pool = generate_tickets(SHIFTED * 6, seed=3003)
        shifted = [r for r in pool if r["queue"] in SHIFTED_QUEUES][:SHIFTED]
        assert len(shifted) == SHIFTED
        for row in shifted:
            row["ticket_id"] = f"shift-{row['ticket_id']}"
        produce_events(kafka_config, tickets, shifted, progress=False)
        wait_for(
            "2 shifted windows",
            lambda: metric(prometheus, "sum(ticketflow_drift_windows_total)") >= 5,
            420,
            diagnose,
        )
        events = [
            DriftEvent.model_validate(record)
            for record in consume(
                kafka_config, env["KAFKA_TOPIC_DRIFT"], max_messages=10, timeout_s=10
            )
        ]
        report_dir = Path(env["DRIFT_REPORT_DIR"])
        wait_for(
            "the evidently report",
            lambda: (
                any(report_dir.glob("*.html"))
                and metric(prometheus, "sum(ticketflow_drift_reports_total)") >= 1
            ),
            300,
            diagnose,
        )
        time.sleep(3)  # a few more scrapes and rule evaluations

        # 5. Every dashboard and alert expression.
        empty = []
        answered = {}
        queries = dashboard_queries()
        assert set(NO_DATA_HERE) <= {where for where, _ in queries}, "stale NO_DATA_HERE"
        for where, expr in queries:
            if where in NO_DATA_HERE:
                print(f"not checked: {where}: {NO_DATA_HERE[where]}")
                continue
            result = prometheus.query(grafana_expr(expr))
            answered[where] = len(result)
            if not result:
                empty.append(f"{where}: {grafana_expr(expr)}")
        alerts = dict(alert_rules())
        assert set(FIRES_ONLY_ON_FAILURE) < set(alerts)
        for name, expr in alerts.items():
            probe = FIRES_ONLY_ON_FAILURE.get(name)
            if probe is None:
                result = prometheus.query(expr)
                answered[f"alert {name}"] = len(result)
                if not result:
                    empty.append(f"alert {name}: {expr}")
            else:
                assert prometheus.query(expr) == [], f"{name} fires in a healthy run"
                result = prometheus.query(probe)
                answered[f"alert {name} (probe)"] = len(result)
                if not result:
                    empty.append(f"alert {name} probe: {probe}")
        print(json.dumps(answered, indent=1))
        assert not empty, "queries without data:\n" + "\n".join(empty) + "\n" + diagnose()

        # 6. The drift numbers: no drift in distribution, drift within 2 shifted windows.
        print(f"in-distribution windows ok={in_ok} events={in_events}; drift events {events}")
        assert in_ok == 3 and in_events == 0, diagnose()
        assert 1 <= len(events) <= 2
        assert events[0].window_size == WINDOW
        assert any(f.feature == "label:queue" and f.drifted for f in events[0].features)
        assert events[0].report_path is not None
        html = Path(events[0].report_path).read_text(encoding="utf-8")
        assert "Drift in embeddings" in html and "Dataset Drift" in html

        # 7. On demand: the last window of the monitor topic (the shifted tickets).
        on_demand = tmp_path / "on-demand.html"
        run = subprocess.run(
            [*cli, "drift", "report", "--window", str(WINDOW), "--out", str(on_demand)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"{WINDOW} records of model" in run.stdout and "drifted=True" in run.stdout
        assert "Drift in embeddings" in on_demand.read_text(encoding="utf-8")

        # 8. Every worker gone: the backlog stays visible (the monitor reads it from the
        # broker), and grows with the tickets nobody labels.
        group_lag = f'sum(ticketflow_consumergroup_lag{{group="{env["WORKER_APP_ID"]}"}})'
        assert metric(prometheus, group_lag) == 0, diagnose()
        worker.stop()
        late = generate_tickets(25, seed=4004)
        for row in late:
            row["ticket_id"] = f"late-{row['ticket_id']}"
        produce_events(kafka_config, tickets, late, progress=False)
        wait_for(
            "the lag of the stopped workers' group",
            lambda: metric(prometheus, group_lag) == len(late),
            60,
            diagnose,
        )
    finally:
        serve.stop()
        worker.stop()
