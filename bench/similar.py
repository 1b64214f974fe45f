"""Benchmark: the help desk's memory — backfill against the labelling core, and the latency of
``POST /v1/similar`` through the real HTTP service at 4k and 100k stored vectors, in one run.

    python -m bench.similar [--data ../shared/datasets/bueck-v3/tickets.csv] [--registry DIR]
        [--pairs 2] [--requests 500] [--stored 100000]

1. The model: the registry's current one (``--registry``, default MODEL_REGISTRY_DIR); where
   there is none, ``ticketflow train --data DATA --target queue --target type`` trains one
   into a temporary registry first.
2. Backfill vs the labelling core, alternated ``--pairs`` times on the same tickets, same
   model, same batch size (DEFAULT_BATCH), the encoders' text cache off so no run is served
   from another's embeddings, each writing into an empty collection:
   - *worker core*: the worker's :class:`~ticketflow.stream.worker.BatchLabeler` in process
     on the tickets as event bytes (decode, label, store with the same document policy,
     publish to a no-op: Kafka left out), one batch at a time;
   - *pipeline*: ``LabelingPipeline.run`` alone on validated tickets (nothing stored);
   - *backfill*: :func:`ticketflow.batch.backfill.backfill` of the file (read, validate,
     look up, label, upsert).
   Prints tickets/s of each and the ratios backfill / worker core and backfill / pipeline.
3. Latency: ``ticketflow serve`` in a subprocess (uvicorn, the product's CLI) on the embedded
   store, queried from this process over HTTP with altered copies of stored tickets (``k=5``,
   one request at a time after a warm-up): first on the backfilled collection (4k vectors),
   then on one of ``--stored`` vectors (the 4k real ones and perturbed copies of them, with
   their labels). ``/v1/classify`` of one ticket on the first too. p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.memory import all_three, altered_copies
from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.batch.backfill import DEFAULT_BATCH, BackfillRequest, backfill, read_rows
from ticketflow.batch.experiments import default_datasets_dir
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.serving import make_pipeline
from ticketflow.runtime.loading import chroma_client, serving_encoders
from ticketflow.schemas import Ticket
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.routing import Position
from ticketflow.stream.worker import BatchLabeler, BatchLimits, RawEvent, Sinks, Threads

REPO = Path(__file__).resolve().parents[1]
PAGE = 1_000


@dataclass
class Loaded:
    pipeline: LabelingPipeline
    version: str
    client: Any


def ensure_model(registry: Path, data: Path, workdir: Path) -> Path:
    """``registry`` when it has a current model, else a new one trained on ``data``."""
    if ModelRegistry(registry).current_version() is not None:
        return registry
    trained = workdir / "registry"
    print(f"no model in {registry}: training one on {data.name} (queue, type)", flush=True)
    env = {**os.environ, "MODEL_REGISTRY_DIR": str(trained)}
    command = [sys.executable, "-m", "ticketflow", "train", "--data", str(data)]
    subprocess.run(
        [*command, "--target", "queue", "--target", "type"], check=True, env=env, cwd=REPO
    )
    return trained


def load(settings: Settings) -> Loaded:
    """The served model on its encoders, without the text cache (see the module docstring)."""
    registry = ModelRegistry(settings.model_registry_dir)
    version = registry.current_version()
    assert version is not None
    encoders = serving_encoders(settings, registry.metadata(version), text_cache=False)
    model = registry.load(
        version, expect_embedding_model=encoders.name, expect_dimension=encoders.dimension
    )
    return Loaded(make_pipeline(encoders, model), version, chroma_client(settings))


def open_collection(loaded: Loaded, name: str) -> ChromaVectorStore:
    return ChromaVectorStore(
        loaded.client,
        name,
        embedding_model=loaded.pipeline.vector_model,
        dimension=loaded.pipeline.dimension,
    )


def core_rate(pipeline: LabelingPipeline, tickets: Sequence[Ticket]) -> float:
    started = time.perf_counter()
    for start in range(0, len(tickets), DEFAULT_BATCH):
        pipeline.run(tickets[start : start + DEFAULT_BATCH])
    return len(tickets) / (time.perf_counter() - started)


async def _discard(_key: bytes | None, _value: bytes) -> None:
    """Kafka left out: the labelled record is serialised by the worker, then dropped."""


def worker_rate(
    loaded: Loaded, settings: Settings, tickets: Sequence[Ticket], collection: str
) -> float:
    """The worker's BatchLabeler on ``tickets`` as event bytes, one batch at a time."""
    store = open_collection(loaded, collection)
    events = [
        RawEvent(
            key=t.ticket_id.encode(),
            value=json.dumps(t.model_dump(mode="json", exclude_none=True)).encode(),
            position=Position("tickets", 0, offset),
        )
        for offset, t in enumerate(tickets)
    ]
    with ThreadPoolExecutor(1) as model, ThreadPoolExecutor(1) as writes:
        labeler = BatchLabeler(
            pipeline=loaded.pipeline,
            store=store,
            model_version=loaded.version,
            sinks=Sinks(labeled=_discard, dead=_discard),
            threads=Threads(model=model, store=writes),
            metrics=WorkerMetrics(),
            limits=BatchLimits(
                fields=settings.field_limits,
                max_message_bytes=settings.kafka_max_message_bytes,
                dlq_keep_bytes=settings.dlq_keep_bytes,
                review=settings.review_policy(),
                document="redacted",
            ),
        )

        async def run() -> None:
            for start in range(0, len(events), DEFAULT_BATCH):
                await labeler.handle(events[start : start + DEFAULT_BATCH])

        started = time.perf_counter()
        asyncio.run(run())
        took = time.perf_counter() - started
    assert store.count() == len(tickets), store.count()
    return len(tickets) / took


def backfill_rate(loaded: Loaded, data: Path, collection: str) -> float:
    store = open_collection(loaded, collection)
    started = time.perf_counter()
    report = backfill(
        BackfillRequest(data, document="redacted"),
        pipeline=loaded.pipeline,
        store=store,
        model_version=loaded.version,
        progress=False,
    )
    took = time.perf_counter() - started
    assert report.written == store.count(), report.summary()
    return report.written / took


def fill(loaded: Loaded, source: str, target: str, total: int, seed: int) -> int:
    """``target`` := the records of ``source`` plus perturbed copies of them, ``total`` in all
    (same labels; noise of about a near-duplicate's distance, then re-normalised)."""
    src = open_collection(loaded, source).collection
    dst = open_collection(loaded, target)
    rng = np.random.default_rng(seed)
    records: list[tuple[str, np.ndarray[Any, Any], dict[str, Any]]] = []
    for offset in range(0, src.count(), PAGE):
        page = src.get(limit=PAGE, offset=offset, include=["embeddings", "metadatas"])
        for ticket_id, vector, metadata in zip(
            page["ids"], page["embeddings"], page["metadatas"], strict=True
        ):
            records.append((ticket_id, np.asarray(vector, dtype=np.float32), dict(metadata)))
    batch = max(1, min(5_000, int(loaded.client.get_max_batch_size())))
    written, copy = 0, 0
    started = time.perf_counter()
    while written < total:
        ids: list[str] = []
        vectors: list[np.ndarray[Any, Any]] = []
        metadatas: list[dict[str, Any]] = []
        for ticket_id, vector, metadata in records:
            if written + len(ids) >= total:
                break
            if copy == 0:
                ids.append(ticket_id)
                vectors.append(vector)
            else:
                noisy = vector + rng.normal(0, 0.03, vector.shape).astype(np.float32)
                ids.append(f"{ticket_id}~copy{copy}")
                vectors.append(noisy / max(float(np.linalg.norm(noisy)), 1e-12))
            metadatas.append(metadata)
        for start in range(0, len(ids), batch):
            dst.collection.upsert(
                ids=ids[start : start + batch],
                embeddings=np.asarray(vectors[start : start + batch], dtype=np.float32),
                metadatas=metadatas[start : start + batch],
            )
        written += len(ids)
        copy += 1
        if copy % 5 == 0:
            print(f"  filled {written:,} / {total:,}", flush=True)
    print(f"filled {target}: {dst.count():,} vectors in {time.perf_counter() - started:.0f}s")
    return dst.count()


@contextmanager
def serve(env: dict[str, str], collection: str, log: Path) -> Iterator[str]:
    """``ticketflow serve`` on a free port over ``collection``; yields its base URL."""
    port = free_port()
    handle = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketflow", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "CHROMA_COLLECTION": collection, "MODEL_RELOAD_ENABLED": "false"},
        cwd=REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ticketflow serve exited {process.returncode}: see {log}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ticketflow serve not ready: see {log}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def latencies(url: str, route: str, bodies: Sequence[dict[str, Any]], warmup: int = 20) -> str:
    """p50 / p99 (ms) of ``bodies`` posted one at a time (after ``warmup`` unmeasured ones)."""
    took: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, body in enumerate([*bodies[:warmup], *bodies]):
            started = time.perf_counter()
            response = client.post(route, json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if i >= warmup:
                took.append(elapsed)
    took.sort()
    p50 = statistics.median(took) * 1000
    p99 = took[min(len(took) - 1, int(0.99 * len(took)))] * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {took[-1] * 1000:.1f} ms (n={len(took)})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data", type=Path, default=default_datasets_dir() / "bueck-v3" / "tickets.csv"
    )
    parser.add_argument("--registry", type=Path, help="default MODEL_REGISTRY_DIR")
    parser.add_argument("--pairs", type=int, default=2, help="backfill/core alternations")
    parser.add_argument("--requests", type=int, default=500, help="measured requests per case")
    parser.add_argument("--stored", type=int, default=100_000, help="vectors of the big store")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    base = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="bench-similar-"))
    registry = ensure_model(args.registry or base.model_registry_dir, args.data, workdir)
    chroma = workdir / "chroma"
    settings = base.model_copy(
        update={"model_registry_dir": registry, "chroma_host": None, "chroma_path": chroma}
    )
    loaded = load(settings)
    rows, bad = read_rows(args.data, targets=list(loaded.pipeline.classifier.targets))
    tickets = [row.ticket for row in rows]
    print(
        f"model {loaded.version} ({loaded.pipeline.vector_model}, {loaded.pipeline.dimension}-d);"
        f" {len(tickets)} tickets of {args.data} ({len(bad)} bad rows)",
        flush=True,
    )

    core_rate(loaded.pipeline, tickets[:DEFAULT_BATCH])  # warm-up: sessions, first calls
    workers, cores, backfills = [], [], []
    last = ""
    for pair in range(args.pairs):
        workers.append(worker_rate(loaded, settings, tickets, f"worker-{pair}"))
        cores.append(core_rate(loaded.pipeline, tickets))
        last = f"backfill-{pair}"
        backfills.append(backfill_rate(loaded, args.data, last))
        print(
            f"round {pair + 1}: worker core {workers[-1]:.1f}, pipeline {cores[-1]:.1f}, "
            f"backfill {backfills[-1]:.1f} tickets/s; backfill / worker core "
            f"{backfills[-1] / workers[-1]:.3f}, backfill / pipeline "
            f"{backfills[-1] / cores[-1]:.3f}",
            flush=True,
        )
    by_worker = [b / w for b, w in zip(backfills, workers, strict=True)]
    by_core = [b / c for b, c in zip(backfills, cores, strict=True)]
    print(
        f"median: backfill / worker core {statistics.median(by_worker):.3f}, backfill / "
        f"pipeline {statistics.median(by_core):.3f} (worker core "
        f"{statistics.median(workers):.1f}, pipeline {statistics.median(cores):.1f}, "
        f"backfill {statistics.median(backfills):.1f} tickets/s)",
        flush=True,
    )

    stored = fill(loaded, last, "big", args.stored, args.seed)
    del loaded  # the embedded store is the server's from here on

    rng = random.Random(args.seed)
    sample = [tickets[i] for i in rng.sample(range(len(tickets)), min(len(tickets), 2_000))]
    queries = [
        {**t.model_dump(mode="json", include={"subject", "body", "tags"}), "k": 5}
        for t in altered_copies(sample, all_three, seed=args.seed)
    ]
    queries = (queries * (1 + args.requests // len(queries)))[: args.requests]
    singles = [t.model_dump(mode="json", exclude_none=True) for t in sample[: args.requests]]
    env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(registry),
        "CHROMA_PATH": str(chroma),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CHROMA_HOST", None)
    log = workdir / "serve.log"
    with serve(env, last, log) as url:
        print(f"/v1/similar, {len(tickets):,} stored: {latencies(url, '/v1/similar', queries)}")
        print(f"/v1/classify, one ticket: {latencies(url, '/v1/classify', singles)}")
    with serve(env, "big", log) as url:
        print(f"/v1/similar, {stored:,} stored: {latencies(url, '/v1/similar', queries)}")
    print(f"(work dir {workdir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
