"""The promotion loop with the drift monitor running: every window of every version evaluated.

Real broker, real embedded ChromaDB, a real ``ticketflow worker`` and ``ticketflow monitor``
in their own processes; ``train``, ``retrain`` and ``models promote|rollback`` through the CLI
entry point (``ticketflow.cli.main.main``), as an operator runs them:

1. ``train`` v1 → tickets → v1's windows evaluated;
2. agents' corrections → ``retrain`` promotes v2 → the worker swaps → v2's windows evaluated;
3. ``models rollback`` → v1 again → evaluated;
4. ``models promote v2`` → evaluated.

The monitor is read the way an operator reads it, from its ``/metrics``: windows evaluated,
records skipped as ``no_reference`` (the ``TicketflowDriftWindowsSkipped`` alert's input) and
the reference in use.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.monitoring import ServiceProcess
from tests.fixtures.pipeline import WorkerProcess
from ticketflow.adapters.kafka.clients import consume, produce_events, produce_raw
from ticketflow.cli.main import main
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.registry import ModelRegistry
from ticketflow.monitoring.reference import load_reference
from ticketflow.schemas import LabelFeedback

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

WINDOW = 50
FIRST = 6 * WINDOW  # enough stored, corrected tickets for retrain's hold-out (30%, >= 20)
LATER = 2 * WINDOW
RENAMED, NEW_NAME = "Billing and Payments", "Payments"

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def loop_env(
    kafka_bootstrap: str,
    topic_names: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """One deployment's settings: set in this process (the CLI commands run here) and given
    to the worker and monitor processes."""
    topics = topic_names("loop")
    suffix = uuid.uuid4().hex[:8]
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_TICKETS": topics.tickets,
        "KAFKA_TOPIC_LABELED": topics.labeled,
        "KAFKA_TOPIC_DLQ": topics.dlq,
        "KAFKA_TOPIC_MONITOR": f"loop-monitoring-{suffix}",
        "KAFKA_TOPIC_DRIFT": f"loop-drift-{suffix}",
        "KAFKA_TOPIC_FEEDBACK": f"loop-feedback-{suffix}",
        "KAFKA_TOPIC_MODEL_UPDATES": f"loop-model-updates-{suffix}",
        "WORKER_APP_ID": f"loop-worker-{suffix}",
        "MONITOR_APP_ID": f"loop-monitor-{suffix}",
        "METRICS_PORT": str(free_port()),
        "MONITOR_METRICS_PORT": str(free_port()),
        "METRICS_BIND": "127.0.0.1",
        "MODEL_REGISTRY_DIR": str(tmp_path / "models"),
        "DRIFT_REFERENCE_DIR": str(tmp_path / "reference"),
        "DRIFT_REPORT_DIR": str(tmp_path / "drift-reports"),
        "DRIFT_REPORT_MIN_INTERVAL_S": "3600",
        "RETRAIN_REPORT_DIR": str(tmp_path / "retrain-reports"),
        "CHROMA_PATH": str(tmp_path / "chroma"),
        "STATE_DIR": str(tmp_path / "state"),
        # retrain learns from the stored vectors and texts: the classifier must read the
        # stored vectors (no cascade) and the store must keep the text.
        "CASCADE": "false",
        "CHROMA_DOCUMENT": "redacted",
        "RETRAIN_USE_PREDICTED": "false",
        # ~6 held-out tickets per class: one ticket moves a class's F1 by more than the
        # default 0.05. The decision policy is tested in tests/stream/test_retrain_integration.py;
        # this test needs the promotion to happen.
        "RETRAIN_CLASS_TOLERANCE": "0.5",
        # Windows close on size only: every window holds exactly WINDOW records and is
        # evaluated (DRIFT_MIN_WINDOW = WINDOW), none is closed early by the clock.
        "DRIFT_WINDOW_SIZE": str(WINDOW),
        "DRIFT_WINDOW_SECONDS": "3600",
        "DRIFT_MIN_WINDOW": str(WINDOW),
        "MODEL_RELOAD_POLL_S": "0",  # swaps come from the announcements on model-updates
        "WORKER_BATCH_MAX": "32",
        "WORKER_BATCH_WITHIN_S": "0.5",
        "LOG_LEVEL": "INFO",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **settings}


@pytest.fixture
def services(
    loop_env: dict[str, str], tmp_path: Path, monitor_factory: Any
) -> Iterator[tuple[WorkerProcess, Callable[[], ServiceProcess]]]:
    worker = WorkerProcess(
        env=loop_env, log=tmp_path / "worker.log", port=int(loop_env["METRICS_PORT"])
    )
    yield worker, lambda: monitor_factory(loop_env)  # type: ignore[no-any-return]
    worker.stop()


def scrape(port: int) -> Metrics:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(metrics: Metrics, name: str, **labels: str) -> float:
    """Sum of ``name``'s series that carry ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, f"ticketflow {' '.join(argv)} exited {code}:\n{out}\n{err}"
    assert "no drift reference" not in err, err
    return out


def test_train_retrain_rollback_promote_every_window_evaluated(
    loop_env: dict[str, str],
    services: tuple[WorkerProcess, Callable[[], ServiceProcess]],
    kafka_config: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    env = loop_env
    worker, start_monitor = services
    monitor_port = int(env["MONITOR_METRICS_PORT"])
    registry = ModelRegistry(Path(env["MODEL_REGISTRY_DIR"]))
    reference_dir = Path(env["DRIFT_REFERENCE_DIR"])

    # 1. The first model, trained on generated tickets.
    data = tmp_path / "train.jsonl"
    cli(capsys, "sample", "--n", "300", "--seed", "7", "--out", str(data))
    cli(capsys, "train", "--data", str(data), "--target", "queue")
    v1 = registry.current_version()
    assert v1 is not None
    worker.start()
    monitor = start_monitor()

    def diagnose() -> str:
        return f"--- worker\n{worker.tail(30)}\n--- monitor\n{monitor.tail(30)}"

    def wait_for(what: str, check: Callable[[], bool], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{diagnose()}"
            assert worker.process is not None and worker.process.poll() is None, diagnose()
            assert monitor.alive(), diagnose()
            time.sleep(0.5)

    def monitor_metrics() -> Metrics:
        try:
            return scrape(monitor_port)
        except OSError:  # not listening yet (its first import of evidently is slow)
            return {}

    def loaded(swaps: int) -> bool:
        """The worker has verified ``swaps`` announced models: each goes into service at the
        next batch's boundary, before that batch is labelled."""
        reloads = total(scrape(worker.port), "ticketflow_model_reloads_total", result="ok")
        return reloads >= swaps

    labelled: dict[str, str] = {}  # ticket id -> model version, from labeled-tickets
    notes: list[str] = []  # printed at the end (capsys takes the CLI's output meanwhile)
    phases: list[tuple[str, str, int, float]] = []  # (step, version, windows, reference info)

    def stream(step: str, version: str, rows: list[dict[str, Any]]) -> None:
        """Publish ``rows``, check ``version`` labelled all of them and the monitor evaluated
        each of their windows against ``version``'s reference."""
        t0 = time.monotonic()
        expected = total(monitor_metrics(), "ticketflow_drift_windows_total") + len(rows) // WINDOW
        produce_events(kafka_config, env["KAFKA_TOPIC_TICKETS"], rows, progress=False)
        ids = {r["ticket_id"] for r in rows}

        def all_labelled() -> bool:
            for record in consume(
                kafka_config, env["KAFKA_TOPIC_LABELED"], max_messages=None, timeout_s=2.0
            ):
                labelled[record["ticket_id"]] = record["model_version"]
            return ids <= labelled.keys()

        wait_for(f"{step}: {len(rows)} tickets labelled", all_labelled)
        assert {labelled[i] for i in ids} == {version}, step
        assert total(scrape(worker.port), "ticketflow_model_info", version=version) == 1

        def evaluated() -> bool:
            now = monitor_metrics()
            skipped = total(now, "ticketflow_monitor_records_skipped_total")
            assert skipped == 0, f"{step}: {skipped:.0f} records skipped\n{diagnose()}"
            return total(now, "ticketflow_drift_windows_total") >= expected

        wait_for(f"{step}: {len(rows) // WINDOW} windows evaluated", evaluated)
        now = monitor_metrics()
        reference = load_reference(reference_dir, version).reference_version
        in_use = total(
            now,
            "ticketflow_drift_reference_info",
            model_version=version,
            reference_version=reference,
        )
        phases.append((step, version, len(rows) // WINDOW, in_use))
        notes.append(f"{step}: {version}, {len(rows)} tickets, {time.monotonic() - t0:.1f}s")

    def tickets(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
        rows = generate_tickets(n, seed=seed)
        for i, row in enumerate(rows):
            row["ticket_id"] = f"{prefix}-{i:05d}"
        return rows

    worker.wait_ready()
    first = tickets(FIRST, seed=21, prefix="A")
    stream("1. train", v1, first)

    # 2. Agents rename a queue on every ticket (and confirm the rest): the challenger learns it.
    feedback = [
        LabelFeedback(
            ticket_id=r["ticket_id"],
            labels={"queue": NEW_NAME if r["queue"] == RENAMED else r["queue"]},
            corrected_by="agent-7",
        )
        for r in first
    ]
    produce_raw(
        kafka_config,
        env["KAFKA_TOPIC_FEEDBACK"],
        [(f.ticket_id.encode(), f.model_dump_json().encode()) for f in feedback],
    )
    wait_for(
        "feedback applied",
        lambda: total(scrape(worker.port), "ticketflow_feedback_applied_total") >= len(feedback),
    )
    t0 = time.monotonic()
    out = cli(capsys, "retrain", "--by", "test")
    notes.append(f"retrain ({time.monotonic() - t0:.1f}s):\n{out.strip()}")
    v2 = registry.current_version()
    assert v2 is not None and v2 != v1 and "promoted" in out, out
    wait_for(f"the worker loading {v2}", lambda: loaded(1))
    stream("2. retrain", v2, tickets(LATER, seed=22, prefix="B"))

    # 3. Roll back to the first model.
    cli(capsys, "models", "rollback", "--reason", "loop test", "--by", "test")
    assert registry.current_version() == v1
    wait_for(f"the worker loading {v1}", lambda: loaded(2))
    stream("3. rollback", v1, tickets(LATER, seed=23, prefix="C"))

    # 4. Promote the challenger again.
    cli(capsys, "models", "promote", v2, "--reason", "loop test", "--by", "test")
    assert registry.current_version() == v2
    wait_for(f"the worker loading {v2}", lambda: loaded(3))
    stream("4. promote", v2, tickets(LATER, seed=24, prefix="D"))

    final = monitor_metrics()
    windows = total(final, "ticketflow_drift_windows_total")
    skipped = total(final, "ticketflow_monitor_records_skipped_total", reason="no_reference")
    records = total(final, "ticketflow_monitor_records_total")
    sent = FIRST + 3 * LATER
    print("\n" + "\n".join(notes))
    print(
        f"promotion loop v1 -> {v2} -> {v1} -> {v2}: {records:.0f} monitor records, "
        f"{windows:.0f} windows evaluated of {sent // WINDOW}, {skipped:.0f} skipped "
        f"(no_reference); {time.monotonic() - started:.0f}s"
    )
    assert skipped == 0, diagnose()
    assert total(final, "ticketflow_monitor_records_skipped_total") == 0
    assert records == sent
    assert windows == sent // WINDOW
    # While each version was serving, the monitor said it evaluated against its reference.
    assert [p[3] for p in phases] == [1.0] * 4, phases
