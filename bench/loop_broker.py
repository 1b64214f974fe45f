"""``bench.loop --broker``: the closed loop through the real services, as an operator runs them.

The same scenario, split, agents and report as :mod:`bench.loop`, but every step of the loop
is the deployed one:

- a Kafka broker (``KAFKA_BOOTSTRAP_SERVERS`` when set, else a private local one), the
  topics created as ``ticketflow topics`` creates them;
- a ChromaDB server (``chroma run``, ``CHROMA_HOST``) shared by the worker, the retrain Job
  and the agents' desk queue, as in production (an embedded store is not meant for several
  processes);
- the champion trained on A and A backfilled as history in this process (``train`` and
  ``backfill``, what ``ticketflow train`` and ``ticketflow backfill`` call; the embedding
  cache spares re-embedding A);
- a ``ticketflow worker`` process labels each window, produced to the tickets topic, and
  stores it; the bench reads every ticket's ``LabeledTicket`` (label, ``needs_review``,
  model version) from the labelled topic;
- the agents read the held tickets from the store in the desk's order (``ReviewQueue``) and
  publish their answers and reassignments as ``LabelFeedback`` on the feedback topic, as
  the desk does; the worker's feedback agent writes them into the store (the bench waits
  for ``ticketflow_feedback_applied_total``);
- ``ticketflow retrain`` (the CronJob's command) runs as a process after every window with
  the bench's cheaper cross-validation (``--cv-folds 3 --cv-max-rows 3000
  --no-block-search``), decides, promotes and announces; the worker hot-reloads the new
  champion (the bench waits for ``ticketflow_model_reloads_total{result="ok"}``) before the
  next window, and checks that the window's labels carry its version.

Challengers and replaced models are scored on C and on the windows in this process, from the
registry, as :mod:`bench.loop` does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.loop import (
    CONFIG,
    TARGET,
    Loop,
    Models,
    Retrained,
    Row,
    Scenario,
    Variant,
    history,
)
from bench.pipeline import kafka, spawn, wait_ready
from ticketflow.adapters.kafka.clients import consume, produce_events, produce_raw
from ticketflow.cli.broker import create_all_topics
from ticketflow.config import Settings
from ticketflow.devtools.chroma_server import ChromaServer
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.runtime.loading import chroma_client
from ticketflow.schemas import LabelFeedback

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
# bench.loop's CONFIG as the retrain command's options.
RETRAIN_OPTIONS = [
    "--cv-folds",
    str(CONFIG.cv_folds),
    "--cv-max-rows",
    str(CONFIG.cv_max_rows),
    *(["--no-block-search"] if not CONFIG.block_grid else []),
]
LABEL_TIMEOUT_S = 1_800.0  # a window of 1,000 tickets takes about a minute on 2 busy cores
FEEDBACK_TIMEOUT_S = 300.0
RELOAD_TIMEOUT_S = 300.0


def deployment(root: Path, bootstrap: str, chroma: ChromaServer, registry: Path) -> dict[str, str]:
    """One deployment's settings, given to every process (and read by this one)."""
    suffix = uuid.uuid4().hex[:8]
    topic = f"loop-{suffix}"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_TICKETS": f"{topic}-tickets",
        "KAFKA_TOPIC_LABELED": f"{topic}-labeled",
        "KAFKA_TOPIC_DLQ": f"{topic}-dlq",
        "KAFKA_TOPIC_MONITOR": f"{topic}-monitoring",
        "KAFKA_TOPIC_FEEDBACK": f"{topic}-feedback",
        "KAFKA_TOPIC_MODEL_UPDATES": f"{topic}-model-updates",
        "KAFKA_TOPIC_DRIFT": f"{topic}-drift",
        "KAFKA_TOPIC_INCIDENTS": f"{topic}-incidents",
        "WORKER_APP_ID": f"loop-worker-{suffix}",
        "MODEL_REGISTRY_DIR": str(registry),
        "DRIFT_REFERENCE_DIR": str(root / "reference"),
        "RETRAIN_REPORT_DIR": str(root / "retrain-reports"),
        "STATE_DIR": str(root / "state"),
        "METRICS_PORT": str(free_port()),
        "METRICS_BIND": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        **chroma.env(),
    }


@contextmanager
def chroma_server(root: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(path=root / "chroma", log=root / "chroma.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as handle:
        process = spawn(["worker"], env, handle)
    try:
        wait_ready(int(env["METRICS_PORT"]), process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of the worker's samples of ``name`` that carry ``labels``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    want = set(labels.items())
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and want <= set(sample.labels.items())
    )


class Labelled:
    """The labelled topic as this bench reads it: ticket id -> ``LabeledTicket`` (as JSON).

    One consumer group that commits, each read a new consumer of it: it goes on where the
    last stopped, and no read can miss records however long the bench spends between two."""

    def __init__(self, config: dict[str, str], topic: str) -> None:
        self.config = config
        self.topic = topic
        self.group = f"bench-loop-{uuid.uuid4().hex[:8]}"
        self.seen: dict[str, dict[str, Any]] = {}

    def poll(self) -> None:
        for record in consume(
            self.config, self.topic, max_messages=None, timeout_s=3.0, group_id=self.group
        ):
            self.seen[str(record.get("ticket_id"))] = record


@dataclass
class Services:
    """The running deployment as the bench drives it: the worker process (its log and
    metrics), the topics and this process's clients."""

    settings: Settings
    env: dict[str, str]
    worker: subprocess.Popen[bytes]
    log: Path
    labelled: Labelled
    reloads: int = 0

    @property
    def port(self) -> int:
        return int(self.env["METRICS_PORT"])

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if self.worker.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
                code = self.worker.poll()
                state = "timed out" if code is None else f"exited {code}"
                raise RuntimeError(f"waiting for {what}: worker {state}\n{tail}")
            time.sleep(0.5)

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.port, name, **labels)

    def label(self, window: Sequence[Row]) -> tuple[list[str], list[bool], Counter[str]]:
        """Publish a window (without its labels) and read back what the worker made of each
        ticket: label, held or not; and how many tickets each model version labelled."""
        fields = ("ticket_id", "subject", "body")  # what the worker reads of a ticket
        tickets: list[Row] = [{k: r[k] for k in fields if k in r} for r in window]
        config = self.settings.kafka_client_config()
        produce_events(config, self.settings.kafka_topic_tickets, tickets, progress=False)
        ids = [r["ticket_id"] for r in window]

        def done() -> bool:
            self.labelled.poll()
            return all(i in self.labelled.seen for i in ids)

        self.wait_for(f"{len(ids)} labelled tickets", done, LABEL_TIMEOUT_S)
        records = [self.labelled.seen[i] for i in ids]
        served = [str(r["predictions"][TARGET]["label"]) for r in records]
        held = [bool(r["needs_review"]) for r in records]
        return served, held, Counter(str(r["model_version"]) for r in records)

    def answer(self, feedback: Sequence[LabelFeedback]) -> None:
        """Publish the agents' answers as the desk does; wait until the worker stored them."""
        name = "ticketflow_feedback_applied_total"
        goal = self.metric(name) + len(feedback)
        produce_raw(
            self.settings.kafka_client_config(),
            self.settings.kafka_topic_feedback,
            [(f.ticket_id.encode(), f.model_dump_json().encode()) for f in feedback],
        )
        self.wait_for(
            f"{len(feedback)} answers applied",
            lambda: self.metric(name) >= goal,
            FEEDBACK_TIMEOUT_S,
        )

    def retrain(self, log: Path, models: Models) -> Retrained:
        """``ticketflow retrain`` as the CronJob runs it; when it promoted, wait until the
        worker has loaded the new champion (it serves it from its next batch on)."""
        retrained = retrain_job(log, models, self.env)
        if retrained.promoted:
            self.reloads += 1
            self.wait_for(
                f"the worker to load {retrained.challenger}", self.reloaded, RELOAD_TIMEOUT_S
            )
        return retrained

    def reloaded(self) -> bool:
        name = "ticketflow_model_reloads_total"
        refused = self.metric(name, result="refused")
        if refused:
            raise RuntimeError(f"the worker refused {refused:.0f} announced model(s)")
        return self.metric(name, result="ok") >= self.reloads


def run_broker_variant(
    sc: Scenario,
    variant: Variant,
    models: Models,
    champion: str,
    root: Path,
    *,
    budget: int,
    seed: int,
    min_class_support: int,
) -> dict[str, Any]:
    """One closed loop through the broker, a worker process and ``ticketflow retrain``."""
    root.mkdir(parents=True, exist_ok=True)
    loop = Loop(sc, variant, models, champion, budget, seed)
    models.registry.promote(champion, by="bench", reason=f"{variant.name}: start (broker)")
    with ExitStack() as stack:
        saved = dict(os.environ)  # the deployment's settings go with it (a next variant's own)
        stack.callback(restore_environment, saved)
        bootstrap = stack.enter_context(kafka(Settings(), root))
        chroma = stack.enter_context(chroma_server(root))
        env = deployment(root, bootstrap, chroma, models.registry.root)
        env["RETRAIN_MIN_CLASS_SUPPORT"] = str(min_class_support)
        os.environ.update(env)  # this process is one of the deployment's clients too
        settings = Settings()
        for name, outcome in create_all_topics(settings).items():
            logger.info("topic %s: %s", name, outcome)
        # The history: A as `ticketflow backfill` imports it.
        store = history(chroma_client(settings), loop, root, settings.chroma_collection)
        logger.info("A backfilled: %d records in the store", store.collection.count())
        labelled = Labelled(settings.kafka_client_config(), settings.kafka_topic_labeled)
        log = root / "worker.log"
        worker = stack.enter_context(worker_process(dict(os.environ), log))
        logger.info("worker ready (pid %d), log %s", worker.pid, log)
        services = Services(settings, env, worker, log, labelled)
        for k, window in enumerate(sc.windows):
            started = time.perf_counter()
            served, held, versions = services.label(window)
            if set(versions) != {loop.serving}:
                logger.warning("window %d labelled by %s, expected %s", k, versions, loop.serving)
            row = loop.labelled(k, window, served, held)
            row["labelled_by"] = dict(versions)
            row["label_seconds"] = time.perf_counter() - started
            services.answer(loop.feedback(store))
            started = time.perf_counter()
            retrained = services.retrain(root / f"retrain-{k}.log", models)
            row["retrain_seconds"] = time.perf_counter() - started
            loop.decided(row, retrained, held=len(store.held_ids()))
    return loop.result()


def restore_environment(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)


def retrain_job(log: Path, models: Models, env: dict[str, str]) -> Retrained:
    """``ticketflow retrain`` as the CronJob runs it; what it decided, from its report."""
    reports = Path(env["RETRAIN_REPORT_DIR"])
    before = set(reports.glob("*.json")) if reports.is_dir() else set()
    with log.open("wb") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "ticketflow", "retrain", *RETRAIN_OPTIONS, "--by", "bench"],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"ticketflow retrain exited {done.returncode}:\n{tail}")
    (report_path,) = set(reports.glob("*.json")) - before
    report = json.loads(report_path.read_text(encoding="utf-8"))
    challenger = str(report["challenger"])
    return Retrained(
        challenger,
        str(report["decision"]),
        list(report["reasons"]),
        promoted=models.registry.current_version() == challenger,
    )
