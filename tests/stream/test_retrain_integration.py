"""The closed loop on the real broker: feedback → retrain → promotion → hot swap in a worker.

Each test prints its numbers (promotion → first new-version prediction, swaps, missing,
duplicates, retrain time).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.chroma import ChromaServer
from tests.fixtures.pipeline import REPO, WorkerProcess
from ticketflow.adapters.kafka.clients import consume, encode_event, produce_events, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.registry import METADATA_FILE, MODEL_FILE, ModelRegistry
from ticketflow.schemas import DriftEvent, LabelFeedback, ModelUpdate

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

RENAMED, NEW_NAME = "Billing and Payments", "Payments"
SWAP = re.compile(r"hot swap (\S+) -> (\S+) at a batch boundary: ([\d.]+)s and (\d+) batch")


@pytest.fixture(scope="module")
def queue_registry(trained_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A champion for the queue alone, trained by ``ticketflow train`` on the same sample.

    Agents correct the queue; with one target every human-labelled ticket is a complete
    training row under the strict label policy (RETRAIN_USE_PREDICTED=false).
    """
    root = tmp_path_factory.mktemp("queue-registry")
    env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(root / "models"),
        "DRIFT_REFERENCE_DIR": str(root / "reference"),
        # The store must hold the vectors the classifier reads: no cascade (README).
        "CASCADE": "false",
    }
    data = trained_registry.parent / "train.jsonl"
    subprocess.run(
        [sys.executable, "-m", "ticketflow", "train", "--data", str(data), "--target", "queue"],
        check=True,
        env=env,
        cwd=REPO,
        capture_output=True,
    )
    return root / "models"


@pytest.fixture
def loop_worker(
    worker_env: dict[str, str],
    chroma_server: ChromaServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[WorkerProcess]:
    """A worker on a private copy of a registry (promotions change it), storing documents.

    The store is a ChromaDB server: `ticketflow retrain` reads it while the worker writes,
    and the embedded store is one process only (docs/configuration.md, CHROMA_HOST). On the
    embedded store, reads under a writing worker failed for two minutes at a time on a loaded
    machine ("Error finding id"; retrain.read_store retries them).
    """
    source: Path = request.getfixturevalue(getattr(request, "param", "trained_registry"))
    registry = tmp_path / "registry"
    shutil.copytree(source, registry)
    suffix = uuid.uuid4().hex[:8]
    worker_env.update(
        chroma_server.env(),
        MODEL_REGISTRY_DIR=str(registry),
        CHROMA_DOCUMENT="redacted",
        KAFKA_TOPIC_FEEDBACK=f"feedback-{suffix}",
        KAFKA_TOPIC_MODEL_UPDATES=f"model-updates-{suffix}",
        KAFKA_TOPIC_DRIFT=f"drift-{suffix}",
        MODEL_RELOAD_POLL_S="0",  # announcements only: the test measures that path
        RETRAIN_REPORT_DIR=str(tmp_path / "reports"),
        # Train on human labels only: tickets streaming in while the Job runs carry the old
        # model's labels, which contradict the correction.
        RETRAIN_USE_PREDICTED="false",
        # ~20 held-out tickets per class: one ticket moves a class's F1 by ~0.05 (measured
        # drops of 0.053 and, 2026-12-07, 0.109 on much better challengers, +0.105 macro-F1),
        # so the tolerance is set above that noise here; README "Feedback, retraining and hot
        # reload". The class veto itself is unit-tested (tests/batch/test_retrain.py).
        RETRAIN_CLASS_TOLERANCE="0.2",
    )
    process = WorkerProcess(
        env=worker_env, log=tmp_path / "worker.log", port=int(worker_env["METRICS_PORT"])
    )
    yield process
    process.stop()


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ticketflow", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"ticketflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout, seconds


def metric(worker: WorkerProcess, series: str) -> float:
    """The value of one exact series (``name`` or ``name{label="x"}``) on the worker."""
    for line in worker.metrics().splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == series:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition: Any, worker: WorkerProcess, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{worker.tail()}"
        assert worker.process is not None and worker.process.poll() is None, worker.tail()
        time.sleep(0.5)


def collect(config: dict[str, str], topic: str, want: int, timeout_s: float = 400) -> list[Any]:
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len({r["ticket_id"] for r in records}) < want and time.monotonic() < deadline:
        records = list(consume(config, topic, max_messages=None, timeout_s=5.0))
        if len({r["ticket_id"] for r in records}) < want:
            time.sleep(2)
    return records


def tickets(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    rows = generate_tickets(n, seed=seed)
    for i, row in enumerate(rows):
        row["ticket_id"] = f"{prefix}-{i:05d}"
    return rows


def produce_in_background(
    config: dict[str, str], topic: str, rows: list[dict[str, Any]], rate: float
) -> threading.Thread:
    """Publish ``rows`` at about ``rate`` per second (in chunks of a second) from a thread."""

    def run() -> None:
        step = max(1, int(rate))
        started = time.monotonic()
        for n, first in enumerate(range(0, len(rows), step)):
            chunk = rows[first : first + step]
            produce_raw(config, topic, [(r["ticket_id"].encode(), encode_event(r)) for r in chunk])
            time.sleep(max(0.0, started + (n + 1) * step / rate - time.monotonic()))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("loop_worker", ["queue_registry"], indirect=True)
def test_feedback_retrain_promote_hot_swap_reject_and_refuse(
    loop_worker: WorkerProcess, kafka_config: dict[str, str], tmp_path: Path
) -> None:
    worker, env = loop_worker, loop_worker.env
    registry = ModelRegistry(Path(env["MODEL_REGISTRY_DIR"]))
    champion = registry.current_version()
    worker.start()
    worker.wait_ready()

    # 1. Stream tickets; agents rename one queue on every ticket and confirm the others.
    first = tickets(600, seed=21, prefix="A")
    produce_events(kafka_config, env["KAFKA_TOPIC_TICKETS"], first, progress=False)
    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(first))
    assert {r["model_version"] for r in labeled} == {champion}
    corrections = [
        LabelFeedback(
            ticket_id=r["ticket_id"],
            labels={"queue": NEW_NAME if r["queue"] == RENAMED else r["queue"]},
            corrected_by="agent-7",
        )
        for r in first[1:]
    ]
    produce_raw(
        kafka_config,
        env["KAFKA_TOPIC_FEEDBACK"],
        [(f.ticket_id.encode(), f.model_dump_json().encode()) for f in corrections],
    )
    # ... one through the CLI, and one for a ticket nobody has seen (→ DLQ).
    one = first[0]
    cli(
        env,
        "feedback",
        one["ticket_id"],
        "--queue",
        NEW_NAME if one["queue"] == RENAMED else one["queue"],
        "--by",
        "agent-7",
    )
    cli(env, "feedback", "NO-SUCH-TICKET", "--queue", NEW_NAME, "--by", "agent-7")
    wait_for(
        lambda: metric(worker, "ticketflow_feedback_applied_total") >= len(first),
        worker,
        "feedback applied",
    )
    dead = collect(kafka_config, env["KAFKA_TOPIC_DLQ"], 1)
    assert [(d["ticket_id"], d["error_type"]) for d in dead] == [
        ("NO-SUCH-TICKET", "unknown_ticket")
    ]

    # 2. The monitoring trigger: no drift event since the last promotion, no run.
    out, _ = cli(env, "retrain", "--if-drift")
    assert "no drift event since the last promotion" in out, out
    assert registry.versions() == [champion]
    drift = DriftEvent(
        model_version=champion,
        reference_version=champion,
        window_start=datetime.now(UTC),
        window_end=datetime.now(UTC),
        window_size=500,
        share_drifted=0.6,
        features=[],
        detected_at=datetime.now(UTC),
    )
    create_topics(kafka_config, [env["KAFKA_TOPIC_DRIFT"]], partitions=1, replication=1)
    produce_raw(kafka_config, env["KAFKA_TOPIC_DRIFT"], [(None, drift.model_dump_json().encode())])

    # 3. Tickets keep flowing while the retrain Job runs and promotes.
    second = tickets(600, seed=22, prefix="B")
    producer = produce_in_background(kafka_config, env["KAFKA_TOPIC_TICKETS"], second, rate=15)
    out, retrain_seconds = cli(env, "retrain", "--if-drift", "--by", "test")
    assert "1 drift event(s) since" in out, out
    print(f"\nretrain ({retrain_seconds:.1f}s incl. process start):\n{out}")
    assert "promoted" in out, out
    challenger = registry.current_version()
    assert challenger != champion
    promoted_at = registry.history()[-1].at
    assert registry.history()[-1].previous == champion and registry.history()[-1].by == "test"
    producer.join()
    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(first) + len(second))
    later = sorted(
        (r for r in labeled if r["ticket_id"].startswith("B-")), key=lambda r: r["processed_time"]
    )
    new = [r for r in later if r["model_version"] == challenger]
    assert new, f"no prediction of {challenger}:\n{worker.tail()}"
    first_new = datetime.fromisoformat(new[0]["processed_time"])
    swap = SWAP.findall(worker.log.read_text())
    assert swap and swap[0][1] == challenger, worker.tail()
    batches = int(swap[0][3])
    print(
        f"promotion -> first prediction of the new version: "
        f"{(first_new - promoted_at).total_seconds():.2f}s, {batches} micro-batch(es) "
        f"(announcement received -> swap {float(swap[0][2]):.2f}s)"
    )
    assert batches <= 2
    # The swap happened at a batch boundary: after it, only the new version.
    versions = [r["model_version"] for r in later]
    switch = versions.index(challenger)
    assert set(versions[switch:]) == {challenger}
    truth = {r["ticket_id"]: r["queue"] for r in second}
    renamed = [r for r in new if truth[r["ticket_id"]] == RENAMED]
    said = Counter(r["predictions"]["queue"]["label"] for r in renamed)
    print(f"tickets of the renamed queue after the swap: {dict(said)}")
    assert said[NEW_NAME] >= 0.7 * len(renamed) and said[RENAMED] == 0
    ids = Counter(r["ticket_id"] for r in labeled)
    assert set(ids) == {r["ticket_id"] for r in first + second}

    # 4. A deliberately worse challenger (embedding only, heavily regularised) is rejected.
    # Judged as sure of its gain: on the few dozen held-out answers here the margin alone once
    # let it through on noise (CI, 2026-12-07: +0.023, above 0 in 63% of the resamples).
    sure = {**env, "RETRAIN_CONFIDENCE": "0.9"}
    out, _ = cli(sure, "retrain", "--features", "embedding", "--c", "0.001", "--by", "test")
    print(out)
    assert "rejected" in out and ("< margin" in out or "(< confidence 90%)" in out), out
    assert registry.current_version() == challenger
    rejected = max(set(registry.versions()) - {champion, challenger})
    reports = sorted((tmp_path / "reports").glob(f"*-{rejected}.json"))
    report = json.loads(reports[-1].read_text())
    assert report["decision"] == "rejected" and report["reasons"]
    assert (tmp_path / "reports" / reports[-1].name.replace(".json", ".md")).is_file()

    # 5. A corrupt artifact is refused while the stream keeps flowing on the old model.
    meta = registry.metadata(rejected)
    with (registry.path(rejected) / MODEL_FILE).open("ab") as handle:
        handle.write(b"corrupted on disk")
    update = ModelUpdate(
        version=rejected,
        previous_version=challenger,
        action="promote",
        reason="test: corrupt artifact",
        promoted_by="test",
        promoted_at=datetime.now(meta.created_at.tzinfo),
        model_sha256=meta.model_sha256,
        embedding_model=meta.embedding_model,
        embedding_dimension=meta.embedding_dimension,
    )
    produce_raw(
        kafka_config,
        env["KAFKA_TOPIC_MODEL_UPDATES"],
        [(rejected.encode(), update.model_dump_json().encode())],
    )
    refused = 'ticketflow_model_reloads_total{result="refused"}'
    wait_for(lambda: metric(worker, refused) >= 1, worker, "the refusal")
    third = tickets(100, seed=23, prefix="C")
    produce_events(kafka_config, env["KAFKA_TOPIC_TICKETS"], third, progress=False)
    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(first) + len(second) + 100)
    after = [r for r in labeled if r["ticket_id"].startswith("C-")]
    assert len({r["ticket_id"] for r in after}) == 100
    assert {r["model_version"] for r in after} == {challenger}
    assert "model reload refused" in worker.log.read_text()
    assert (registry.path(rejected) / METADATA_FILE).is_file()


def test_three_hot_swaps_lose_and_duplicate_nothing(
    loop_worker: WorkerProcess, kafka_config: dict[str, str]
) -> None:
    worker, env = loop_worker, loop_worker.env
    registry = ModelRegistry(Path(env["MODEL_REGISTRY_DIR"]))
    v1 = registry.current_version()
    assert v1 is not None
    # A second, valid version: the same artifact registered under another name.
    v2 = f"{v1}-copy"
    shutil.copytree(registry.path(v1), registry.path(v2))
    meta = json.loads((registry.path(v2) / METADATA_FILE).read_text())
    meta["version"] = v2
    (registry.path(v2) / METADATA_FILE).write_text(json.dumps(meta))
    worker.start()
    worker.wait_ready()

    rows = tickets(1200, seed=31, prefix="S")
    # 20/s: the stream lasts a minute, so every swap lands while tickets are flowing.
    producer = produce_in_background(kafka_config, env["KAFKA_TOPIC_TICKETS"], rows, rate=20)

    def swaps_done(n: int) -> bool:
        return len(SWAP.findall(worker.log.read_text())) >= n

    labeled_total = "ticketflow_tickets_labeled_total"
    wait_for(lambda: metric(worker, labeled_total) >= 150, worker, "labels")
    cli(env, "models", "promote", v2, "--reason", "swap 1", "--by", "test")
    wait_for(lambda: swaps_done(1), worker, "swap 1")
    wait_for(lambda: metric(worker, labeled_total) >= 400, worker, "labels")
    cli(env, "models", "rollback", "--reason", "swap 2", "--by", "test")
    wait_for(lambda: swaps_done(2), worker, "swap 2")
    wait_for(lambda: metric(worker, labeled_total) >= 650, worker, "labels")
    cli(env, "models", "promote", v2, "--reason", "swap 3", "--by", "test")
    wait_for(lambda: swaps_done(3), worker, "swap 3")
    producer.join()
    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(rows))
    ids = Counter(r["ticket_id"] for r in labeled)
    missing = {r["ticket_id"] for r in rows} - set(ids)
    duplicates = sum(c - 1 for c in ids.values())
    swaps = SWAP.findall(worker.log.read_text())
    ordered = sorted(labeled, key=lambda r: (r["processed_time"], r["source"]["offset"]))
    transitions = sum(
        1 for a, b in itertools.pairwise(ordered) if a["model_version"] != b["model_version"]
    )
    per_batch: dict[str, set[str]] = {}
    for r in labeled:
        per_batch.setdefault(r["processed_time"], set()).add(r["model_version"])
    print(
        f"\n3-swap run: published {len(rows)}, labelled {len(labeled)} (unique {len(ids)}), "
        f"missing {len(missing)}, duplicates {duplicates}, swaps {len(swaps)} "
        f"({', '.join(f'{s[2]}s/{s[3]} batch' for s in swaps)}), version changes {transitions}"
    )
    assert [s[1] for s in swaps] == [v2, v1, v2]
    assert not missing and duplicates == 0
    assert transitions == 3
    assert all(len(v) == 1 for v in per_batch.values())  # one model per micro-batch
    assert Counter(r["model_version"] for r in labeled).keys() == {v1, v2}
    assert [h.action for h in registry.history()[-3:]] == ["promote", "rollback", "promote"]


def test_every_worker_of_the_group_swaps(
    loop_worker: WorkerProcess, kafka_config: dict[str, str], tmp_path: Path
) -> None:
    """Two workers share the tickets' consumer group; each still gets every announcement."""
    first, env = loop_worker, loop_worker.env
    registry = ModelRegistry(Path(env["MODEL_REGISTRY_DIR"]))
    v1 = registry.current_version()
    assert v1 is not None
    v2 = f"{v1}-copy"
    shutil.copytree(registry.path(v1), registry.path(v2))
    meta = json.loads((registry.path(v2) / METADATA_FILE).read_text())
    meta["version"] = v2
    (registry.path(v2) / METADATA_FILE).write_text(json.dumps(meta))
    port = free_port()
    second = WorkerProcess(
        env={
            **env,
            "METRICS_PORT": str(port),
            "STATE_DIR": str(tmp_path / "state-2"),
        },
        log=tmp_path / "worker-2.log",
        port=port,
    )
    try:
        first.start()
        second.start()
        first.wait_ready()
        second.wait_ready()
        rows = tickets(600, seed=41, prefix="M")
        producer = produce_in_background(kafka_config, env["KAFKA_TOPIC_TICKETS"], rows, rate=20)
        labeled_total = "ticketflow_tickets_labeled_total"
        wait_for(
            lambda: metric(first, labeled_total) + metric(second, labeled_total) >= 150,
            first,
            "labels",
        )
        cli(env, "models", "promote", v2, "--reason", "both workers", "--by", "test")
        for worker in (first, second):
            wait_for(lambda w=worker: bool(SWAP.findall(w.log.read_text())), worker, "a swap")
        producer.join()
        labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(rows))
    finally:
        second.stop()
    ids = Counter(r["ticket_id"] for r in labeled)
    per_worker = [SWAP.findall(w.log.read_text()) for w in (first, second)]
    print(
        f"\n2 workers: labelled {len(labeled)} (unique {len(ids)}), "
        f"swaps {[[(s[1][-12:], s[3]) for s in p] for p in per_worker]}"
    )
    assert all(p and p[0][1] == v2 for p in per_worker)
    assert set(ids) == {r["ticket_id"] for r in rows}
    ordered = sorted(labeled, key=lambda r: r["processed_time"])
    assert ordered[-1]["model_version"] == v2
