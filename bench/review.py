"""The review desk's JSON API on a large store: ``GET /v1/review?limit=50`` latency.

    MODEL_REGISTRY_DIR=... python -m bench.review [--tickets 100000] [--held 0.3] [--requests 1000]

Writes ``--tickets`` records into a new embedded ChromaDB under a temp dir, directly, as the
worker writes them (``labeled_metadata``: labels, probabilities, top labels, review flags and
margin, tags, the model text as the document), with random unit vectors of the served model's
dimension and generated ticket texts; ``--held`` of them are held for review (the review gate's
target is unsure). Times one full read of the held snapshot in this process
(``ReviewQueue.refresh``, what serve's background thread repeats), then starts ``ticketflow
serve`` on that store in a subprocess (no tokens: loopback), warms it up and sends
``--requests`` sequential requests with httpx, while serve's refresher re-reads the snapshot
in the background as it does when the desk is in use (the warm-up lasts until it has read it
again after its first, full read; the timed answers' ``refreshed_at`` count the reads made
meanwhile). Prints p50/p95/p99/max, the store's size, the held count and serve's own last
read time (``ticketflow_review_queue_refresh_seconds``).

The repeated page's similar tickets are kept by serve (``NeighbourCache``, 60 s): after the
warm-up the timed requests do not search for them. So it then asks once for every page
filtered by a target, and by a target and label: pages whose tickets were mostly not
searched yet, each as costly as a first request (printed apart: p50 and max).
``--dir`` keeps the store, or reuses one built there before. docs/api.md records the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.pipeline import spawn
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.text import build_texts
from ticketflow.review.queue import ReviewQueue
from ticketflow.runtime.loading import load_runtime
from ticketflow.schemas import LabeledTicket, Ticket
from ticketflow.schemas.store import labeled_metadata

REPO = Path(__file__).resolve().parents[1]
DISTINCT_TEXTS = 5_000  # generated tickets, reused with new ids (generation is the slow part)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _labeled(
    ticket_id: str,
    labels: dict[str, list[str]],
    gate: str,
    held: bool,
    at: datetime,
    offset: int,
    rng: random.Random,
) -> LabeledTicket:
    predictions: dict[str, Any] = {}
    for target, names in labels.items():
        top = rng.sample(names, k=min(3, len(names)))
        unsure = held if target == gate else rng.random() < 0.3
        first = rng.uniform(0.3, 0.7) if unsure else rng.uniform(0.85, 0.99)
        second = rng.uniform(0.0, 1.0 - first)
        scores = [first, second, max(0.0, 1.0 - first - second) / 2][: len(top)]
        predictions[target] = {
            "label": top[0],
            "probability": first,
            "top": [{"label": n, "probability": p} for n, p in zip(top, scores, strict=True)],
            "needs_review": unsure,
            "review_threshold": 0.8,
        }
    return LabeledTicket.model_validate(
        {
            "ticket_id": ticket_id,
            "predictions": predictions,
            "needs_review": held,
            "review_gate": [gate],
            "model_version": "bench",
            "embedding_model": "bench",
            "event_time": None,
            "processed_time": at,
            "source": {"topic": "tickets", "partition": offset % 12, "offset": offset},
        }
    )


def build_store(settings: Settings, n: int, held_share: float, seed: int) -> tuple[Any, int]:
    """Write ``n`` records into the store of ``settings``; returns (runtime, held count)."""
    serving = load_runtime(settings)
    classifier = serving.pipeline.classifier
    labels = {target: classifier.labels(target) for target in classifier.targets}
    gate = classifier.targets[0]
    dimension = serving.pipeline.dimension
    rows = generate_tickets(min(n, DISTINCT_TEXTS), seed=seed)
    tickets = [Ticket.model_validate(r) for r in rows]
    texts = build_texts(tickets, max_chars=settings.max_text_chars)
    rng = random.Random(seed)
    vectors_rng = np.random.default_rng(seed)
    batch = 5_000
    held = 0
    start = datetime.now(UTC) - timedelta(days=7)
    began = time.perf_counter()
    for first in range(0, n, batch):
        ids, metadatas, documents = [], [], []
        for i in range(first, min(n, first + batch)):
            is_held = rng.random() < held_share
            held += is_held
            ticket_id = f"bench-{i:06d}"
            at = start + timedelta(seconds=i * 6)
            labeled = _labeled(ticket_id, labels, gate, is_held, at, i, rng)
            source = tickets[i % len(tickets)]
            ids.append(ticket_id)
            metadatas.append(labeled_metadata(labeled, source.tags))
            documents.append(texts[i % len(texts)])
        vectors = vectors_rng.standard_normal((len(ids), dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        serving.store.upsert(ids, vectors, metadatas, documents)
        print(f"  wrote {first + len(ids):,} records ({time.perf_counter() - began:.0f} s)")
    return serving, held


def time_refresh(serving: Any, runs: int) -> tuple[list[float], list[float]]:
    """Seconds of a first read of the held snapshot (every held record's metadata), and of
    the reads after it (the held ids, and the metadata of new ones: none here)."""
    targets = serving.pipeline.classifier.targets
    first, later = [], []
    for _ in range(runs):
        queue = ReviewQueue(serving.store, lambda: targets)
        begun = time.perf_counter()
        queue.refresh()
        first.append(time.perf_counter() - begun)
        begun = time.perf_counter()
        queue.refresh()
        later.append(time.perf_counter() - begun)
    return first, later


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000, help="stored records (100000)")
    parser.add_argument("--held", type=float, default=0.3, help="share held for review (0.3)")
    parser.add_argument("--requests", type=int, default=1000, help="timed requests (1000)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument(
        "--dir", type=Path, help="keep the store here, or reuse the one there (default: temp)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-review-") as temp:
        root = args.dir or Path(temp)
        chroma = root / "chroma"
        settings = Settings(chroma_path=chroma, chroma_host=None)
        if chroma.is_dir():
            serving = load_runtime(settings)
            held = len(serving.store.held_ids())
            print(f"store: {chroma} (reused)")
        else:
            print(f"store: {chroma}, {args.tickets:,} records, {args.held:.0%} held")
            began = time.perf_counter()
            serving, held = build_store(settings, args.tickets, args.held, args.seed)
            print(f"  built in {time.perf_counter() - began:.0f} s")
        stored = serving.store.count()
        print(f"  {stored:,} stored, {held:,} held")
        first, later = time_refresh(serving, 2)
        print(
            "held snapshot (ReviewQueue.refresh, in this process): full read "
            + ", ".join(f"{t:.2f} s" for t in first)
            + "; a later read (ids, no new ticket) "
            + ", ".join(f"{t:.2f} s" for t in later)
        )
        classifier = serving.pipeline.classifier
        pages = [{"target": t} for t in classifier.targets] + [
            {"target": t, "label": label}
            for t in classifier.targets
            for label in classifier.labels(t)
        ]
        del serving, classifier  # serve opens the store in its own process

        port = free_port()
        env = {
            **os.environ,
            "CHROMA_PATH": str(chroma),
            "MODEL_RELOAD_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            # nothing is published here; a closed port keeps librdkafka from finding a broker
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        }
        for name in ("CHROMA_HOST", "SERVE_TOKENS_FILE", "METRICS_BIND"):
            env.pop(name, None)
        log = root / "serve.log"
        with log.open("wb") as handle:
            process = spawn(["serve", "--port", str(port)], env, handle)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"serve exited:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"serve not ready:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            params = {"limit": args.limit}
            with httpx.Client(base_url=url, timeout=120) as client:
                begun = time.perf_counter()
                opening = client.get("/v1/review", params=params)
                opening.raise_for_status()
                print(
                    "first request (waits for serve's first read, begun at its start): "
                    f"{time.perf_counter() - begun:.2f} s"
                )
                # Warm-up: until serve has read the queue again after its first, full read
                # (it rests 4 times that read first), so the timed requests share the machine
                # with the refresher's later reads, as a desk in use does.
                began, warm = time.monotonic(), 0
                while warm < args.warmup or (
                    client.get("/v1/review", params={"limit": 1}).json()["refreshed_at"]
                    == opening.json()["refreshed_at"]
                    and time.monotonic() - began < 300
                ):
                    client.get("/v1/review", params=params).raise_for_status()
                    warm += 1
                took: list[float] = []
                bodies: list[bytes] = []
                for _ in range(args.requests):
                    begun = time.perf_counter()
                    response = client.get("/v1/review", params=params)
                    took.append(time.perf_counter() - begun)
                    response.raise_for_status()
                    bodies.append(response.content)
                body = response.json()
                reads = len({json.loads(b)["refreshed_at"] for b in bodies})
                # Pages not asked for before: their tickets' neighbours are not kept yet.
                cold: list[float] = []
                for filters in pages:
                    begun = time.perf_counter()
                    client.get("/v1/review", params={**params, **filters}).raise_for_status()
                    cold.append(time.perf_counter() - begun)
                metrics = client.get("/metrics").text
            serve_refresh = metric(metrics, "ticketflow_review_queue_refresh_seconds")
            print(
                f"GET /v1/review?limit={args.limit}: {args.requests} requests in "
                f"{sum(took):.0f} s after {warm} warm-up, {len(body['tickets'])} tickets per "
                f"answer, {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB; they saw "
                f"{reads} snapshots (serve read the queue {reads - 1} times meanwhile)"
            )
            print(
                f"  p50 {_pct(took, 0.5):.1f} ms  p95 {_pct(took, 0.95):.1f} ms  "
                f"p99 {_pct(took, 0.99):.1f} ms  max {max(took) * 1000:.1f} ms"
            )
            print(
                f"  {len(cold)} other pages, once each (filtered by target, and label; "
                f"neighbours not kept yet): p50 {_pct(cold, 0.5):.1f} ms  "
                f"max {max(cold) * 1000:.1f} ms"
            )
            print(
                f"  store {stored:,} records, held (queue total) {body['total']:,}, "
                f"serve's last snapshot read "
                f"{serve_refresh if serve_refresh is not None else float('nan'):.2f} s"
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
