"""Live accuracy end to end: a real worker labels tickets, agents label some of them on the
feedback topic, and

* ``ticketflow_corrections_total`` and the dashboard's correction-rate query, read from a real
  Prometheus scraping the worker, equal the counts and rates computed directly from the
  (model label, agent label) pairs;
* ``ticketflow report performance`` (the CLI) shows per-class F1, in its Evidently report, and
  accuracy and macro-F1, in its summary, equal to scikit-learn's on the same pairs.

The model labels are read from the labelled topic the worker publishes; the agents' labels are
the generator's (noisy) truth, so some feedback changes the model's label and some confirms it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.fixtures.monitoring import (
    PrometheusServer,
    dashboard_queries,
    grafana_expr,
    prometheus_factory,  # noqa: F401  (fixture)
)
from tests.fixtures.pipeline import REPO, WorkerProcess
from ticketflow.adapters.kafka.clients import consume, produce_events, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import LabelFeedback

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STREAMED = 120
REVIEWED = 90  # tickets agents label: queue on all, priority on every other one
PANEL = "ticketflow-pipeline.json: Correction rate by class (time range) [A]"


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, diagnose: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{diagnose()}"
        time.sleep(0.5)


def labelled(config: dict[str, str], topic: str, want: int, timeout: float) -> dict[str, Any]:
    """The worker's published labels by ticket id, once ``want`` tickets are there."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        for record in consume(config, topic, max_messages=None, timeout_s=3.0):
            found[record["ticket_id"]] = record
    return found


def evidently_per_class(html: str) -> dict[str, dict[str, float]]:
    """The "Classification Quality by Label" heatmap of an Evidently 0.7 report page: per
    class, precision, recall and f1-score as the page shows them."""
    match = re.search(r"var metric_\w+ = (\{.*?\});\s*\n", html, re.S)
    assert match, "no report data in the Evidently page"

    def graphs(widget: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from (widget.get("params") or {}).get("data") or []
        for child in widget.get("widgets") or []:
            yield from graphs(child)

    for widget in json.loads(match.group(1))["widgets"]:
        for trace in graphs(widget):
            if trace.get("type") == "heatmap" and trace.get("y") == [
                "precision",
                "recall",
                "f1-score",
            ]:
                return {
                    str(name): dict(zip(trace["y"], column, strict=False))
                    for name, column in zip(trace["x"], zip(*trace["z"], strict=False), strict=True)
                }
    raise AssertionError("no per-class quality heatmap in the Evidently page")


@pytest.fixture
def feedback_worker(
    worker_env: dict[str, str], kafka_config: dict[str, str], tmp_path: Path
) -> Iterator[WorkerProcess]:
    worker_env["KAFKA_TOPIC_FEEDBACK"] = f"t-feedback-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_config, [worker_env["KAFKA_TOPIC_FEEDBACK"]], partitions=1, replication=1)
    process = WorkerProcess(
        env=worker_env, log=tmp_path / "worker.log", port=int(worker_env["METRICS_PORT"])
    )
    yield process
    process.stop()


def test_corrections_metric_panel_and_performance_report_match_a_direct_computation(
    feedback_worker: WorkerProcess,
    kafka_config: dict[str, str],
    tmp_path: Path,
    prometheus_factory: Any,  # noqa: F811
) -> None:
    worker, env = feedback_worker, feedback_worker.env
    worker.start()
    # no monitor here: its target is down, which none of the queries below reads
    prometheus: PrometheusServer = prometheus_factory(worker.port, free_port())
    worker.wait_ready()

    def diagnose() -> str:
        return f"--- worker\n{worker.tail(30)}\n--- prometheus\n{prometheus.tail(10)}"

    # 1. Tickets in, the model's labels out.
    stream = generate_tickets(STREAMED, seed=515)
    for row in stream:
        row["ticket_id"] = f"c-{row['ticket_id']}"
    produce_events(kafka_config, env["KAFKA_TOPIC_TICKETS"], stream, progress=False)
    published = labelled(kafka_config, env["KAFKA_TOPIC_LABELED"], STREAMED, 240)
    assert len(published) == STREAMED, diagnose()

    # The served model's (predicted, corrected) pairs exist at 0 before any feedback, so
    # increase() sees each one's first count.
    registry = ModelRegistry(Path(env["MODEL_REGISTRY_DIR"]))
    version = registry.current_version()
    assert version is not None
    model_classes = registry.metadata(version).labels
    pairs_at_zero = {
        (target, predicted, corrected)
        for target, names in model_classes.items()
        for predicted in names
        for corrected in names
    }
    wait_for(
        "the model's correction series at 0, in Prometheus",
        lambda: (
            {
                (s["metric"]["target"], s["metric"]["predicted"], s["metric"]["corrected"])
                for s in prometheus.query("ticketflow_corrections_total == 0")
            }
            == pairs_at_zero
        ),
        60,
        diagnose,
    )

    # 2. Agents label some: the generator's labels (changes where the model was wrong,
    # confirmations where it was right), plus one for a ticket nobody labelled (dead letter).
    reviewed = stream[:REVIEWED]
    feedback = [
        LabelFeedback(
            ticket_id=row["ticket_id"],
            labels={"queue": row["queue"], **({"priority": row["priority"]} if i % 2 else {})},
            corrected_by="agent-7",
        )
        for i, row in enumerate(reviewed)
    ]
    feedback.append(LabelFeedback(ticket_id="nobody", labels={"queue": "x"}, corrected_by="a"))
    produce_raw(
        kafka_config,
        env["KAFKA_TOPIC_FEEDBACK"],
        [(f.ticket_id.encode(), f.model_dump_json().encode()) for f in feedback],
    )
    pairs: dict[str, list[tuple[str, str]]] = {"queue": [], "priority": []}
    for item in feedback[:-1]:
        for target, human in item.labels.items():
            model = published[item.ticket_id]["predictions"][target]["label"]
            pairs[target].append((model, human))
    n_labels = sum(len(p) for p in pairs.values())
    assert n_labels == REVIEWED + REVIEWED // 2

    # 3. The counter, as Prometheus scraped it: every label once, changed or not.
    wait_for(
        "every label agents gave, in Prometheus",
        lambda: (
            float(
                (prometheus.query("sum(ticketflow_corrections_total)") or [{"value": [0, "0"]}])[0][
                    "value"
                ][1]
            )
            == n_labels
        ),
        90,
        diagnose,
    )
    time.sleep(2)  # one more scrape, so every series' last sample is the final count
    scraped = Counter[tuple[str, str, str, str]]()
    for series in prometheus.query("ticketflow_corrections_total > 0"):
        labels = series["metric"]
        key = (labels["target"], labels["predicted"], labels["corrected"], labels["changed"])
        scraped[key] += int(float(series["value"][1]))
    direct = Counter[tuple[str, str, str, str]](
        (target, model, human, str(model != human).lower())
        for target, rows in pairs.items()
        for model, human in rows
    )
    assert scraped == direct
    changed = sum(n for (_, _, _, c), n in direct.items() if c == "true")
    assert 0 < changed < n_labels, "the sample gives both corrections and confirmations"

    # 4. The dashboard's correction-rate query: per (target, class the model predicted).
    expr = dict(dashboard_queries())[PANEL]
    panel = {
        (s["metric"]["target"], s["metric"]["predicted"]): float(s["value"][1])
        for s in prometheus.query(grafana_expr(expr))
    }
    expected: dict[tuple[str, str], float] = {}
    for target, rows in pairs.items():
        for predicted in {m for m, _ in rows}:
            mine = [h for m, h in rows if m == predicted]
            expected[(target, predicted)] = sum(h != predicted for h in mine) / len(mine)
    assert panel.keys() == expected.keys()
    for cls, rate in expected.items():
        assert math.isclose(panel[cls], rate, abs_tol=1e-9), (cls, panel[cls], rate)
    print(f"\ncorrection rate by class (Prometheus = direct): {sorted(expected.items())}")

    # 5. The performance report, read back from what it wrote.
    worker.stop()  # the CLI opens the same ChromaDB path
    out = tmp_path / "performance"
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "ticketflow", "report", "performance", "--out", str(out)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"report performance: {time.monotonic() - started:.1f}s\n{run.stdout}")
    summary = json.loads((out / "summary.json").read_text())
    for target, rows in pairs.items():
        models = [m for m, _ in rows]
        people = [h for _, h in rows]
        numbers = summary["targets"][target]["all"]
        assert numbers["n"] == len(rows)
        assert math.isclose(numbers["accuracy"], accuracy_score(people, models))
        macro = f1_score(people, models, average="macro", zero_division=0)
        assert math.isclose(numbers["macro_f1"], macro)
        shown = evidently_per_class((out / f"evidently-{target}.html").read_text())
        classes = sorted(shown)
        assert set(classes) == set(models) | set(people)
        per_class = f1_score(people, models, labels=classes, average=None, zero_division=0)
        for name, f1 in zip(classes, per_class, strict=True):
            value = shown[name]["f1-score"]
            assert math.isclose(value, float(f1), abs_tol=1e-9), (target, name, value, f1)
        rounded = {c: round(float(f), 3) for c, f in zip(classes, per_class, strict=True)}
        print(f"{target}: per-class F1 (report = sklearn) {rounded}")
