"""Benchmark: the bare encoder vs. the full pipeline through Kafka, in one run.

    python -m bench.pipeline [--n 600] [--threads 2] [--latency-n 200] [--commit batch]
        [--encoder-n 0] [--embedding-batch-size 0] [--batch-max 0] [--similar-k 0 --pairs 2]
        [--incidents --pairs 2]

Same texts and the same torch thread count for both. Prints tickets/s for each and their
ratio, p50/p99 end-to-end latency at half the measured capacity, and the worker's peak RSS.
``--commit interval`` runs the worker with offsets committed only on Faust's timer (the
policy before per-batch commits), to measure what committing every batch costs.
``--similar-k K`` runs the worker ``--pairs`` times each with SIMILAR_K=0 and K, alternated,
each run on its own empty vector store, and prints the throughput ratio (K / 0) per pair.
``--incidents`` does the same with INCIDENTS_ENABLED=false and true (the emerging-incident
detector), on tickets without created_at (event time = arrival, as live), and prints the
ratio (on / off) per pair and the incidents it opened. The worker inherits the environment,
so ``INCIDENT_TEXT_WEIGHT=0.3 python -m bench.pipeline --incidents ...`` measures the
detector with the words' part (the joined space) on.
Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a private jar-based broker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, Producer

from ticketflow.adapters.kafka.clients import encode_event, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import LocalKafkaBroker, free_port
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.embedding import SentenceTransformerEncoder
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def kafka(settings: Settings, workdir: Path) -> Iterator[str]:
    if settings.kafka_bootstrap_servers:
        yield settings.kafka_bootstrap_servers
        return
    broker = LocalKafkaBroker(
        version=settings.local_kafka_version,
        cache_dir=settings.cache_dir,
        state_dir=workdir / "broker",
        port=free_port(),
        controller_port=free_port(),
    )
    broker.up()
    try:
        yield broker.bootstrap
    finally:
        broker.down()


def encode_in_loop(encoder: SentenceTransformerEncoder, texts: list[str], size: int) -> float:
    """Seconds to encode ``texts`` as a stream would: one ``encode`` call per batch."""
    encoder.batch_size = size
    start = time.perf_counter()
    for i in range(0, len(texts), size):
        encoder.encode(texts[i : i + size])
    return time.perf_counter() - start


def bare_encoder(texts: list[str], model: str, threads: int) -> tuple[float, int]:
    """Best batch size on a probe, then the whole set at that size: (tickets/s, batch size)."""
    encoder = SentenceTransformerEncoder(model, batch_size=32, threads=threads)
    probe = texts[: min(len(texts), 256)]
    encoder.encode(probe[:16])  # warm-up
    best = (0.0, 32)
    for size in (8, 16, 32, 64, 128):
        rate = len(probe) / encode_in_loop(encoder, probe, size)
        print(f"  encoder batch {size:3d}: {rate:6.1f} tickets/s")
        best = max(best, (rate, size))
    return len(texts) / encode_in_loop(encoder, texts, best[1]), best[1]


def output_timestamps(bootstrap: str, topic: str, want: int, timeout_s: float) -> dict[str, float]:
    """ticket_id -> broker timestamp (s) of its labelled record, until ``want`` ids are seen."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            record = json.loads(message.value() or b"{}")
            seen.setdefault(record["ticket_id"], message.timestamp()[1] / 1000)
    finally:
        consumer.close()
    return seen


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """``pid``'s peak resident memory in MB (``field="VmRSS"``: its current one)."""
    with suppress(OSError), Path(f"/proc/{pid}/status").open() as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (all its threads)."""
    with suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def spawn(args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``ticketflow ARGS`` in a session of its own (``os.killpg`` stops it and its children),
    its output to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "ticketflow", *args],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 300) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        with (
            suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply,
        ):
            if reply.status == 200:
                return time.time()
        time.sleep(0.05)
    raise RuntimeError("worker not ready in time")


def stage_seconds(metrics_text: str) -> dict[str, float]:
    """Total seconds per pipeline stage, from the worker's own histogram."""
    totals: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("ticketflow_stage_duration_seconds_sum"):
            stage = line.split('stage="')[1].split('"')[0]
            totals[stage] = round(float(line.split()[-1]), 2)
    return totals


def percentile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0.0
    )


def fresh_topics(bootstrap: str, workdir: Path, prefix: str) -> dict[str, str]:
    """A worker's environment on topics of its own, created on ``bootstrap`` (tickets,
    labelled, dead letters, incidents), its store and state under ``workdir``, its metrics on
    a free local port, logging warnings only."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_TICKETS": f"{prefix}-in-{suffix}",
        "KAFKA_TOPIC_LABELED": f"{prefix}-out-{suffix}",
        "KAFKA_TOPIC_DLQ": f"{prefix}-dlq-{suffix}",
        "KAFKA_TOPIC_INCIDENTS": f"{prefix}-incidents-{suffix}",
        "WORKER_APP_ID": f"{prefix}-{suffix}",
        "CHROMA_PATH": str(workdir / "chroma"),
        "STATE_DIR": str(workdir / "state"),
        "METRICS_PORT": str(free_port()),
        "METRICS_BIND": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    config = {"bootstrap.servers": bootstrap}
    three = [env[k] for k in ("KAFKA_TOPIC_TICKETS", "KAFKA_TOPIC_LABELED", "KAFKA_TOPIC_DLQ")]
    create_topics(config, three, partitions=3, replication=1)
    create_topics(config, [env["KAFKA_TOPIC_INCIDENTS"]], partitions=1, replication=1)
    return env


def measure_stream(
    settings: Settings,
    workdir: Path,
    env: dict[str, str],
    bulk: list[dict[str, Any]],
    paced: list[dict[str, Any]],
    *,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One worker (``env`` names its registry) through Kafka: ``bulk`` pre-published for
    throughput, then ``paced`` at half that rate for latency; cold start, RSS, stages."""
    with kafka(settings, workdir) as bootstrap:
        env = {**env, **fresh_topics(bootstrap, workdir, "bench"), **(extra_env or {})}
        topics = {"tickets": env["KAFKA_TOPIC_TICKETS"], "labeled": env["KAFKA_TOPIC_LABELED"]}
        port = int(env["METRICS_PORT"])
        config = {"bootstrap.servers": bootstrap}
        produce_raw(
            config, topics["tickets"], [(t["ticket_id"].encode(), encode_event(t)) for t in bulk]
        )
        log = (workdir / "worker.log").open("wb")
        started = time.time()
        worker = spawn(["worker"], env, log)
        try:
            ready_at = wait_ready(port, worker)
            cpu_at_ready = cpu_seconds(worker.pid)
            done = output_timestamps(bootstrap, topics["labeled"], len(bulk), timeout_s=1800)
            # How many of the machine's cores the worker kept busy while it drained the bulk.
            cores_busy = (cpu_seconds(worker.pid) - cpu_at_ready) / (time.time() - ready_at)
            # Steady state: from the first published label to the last, so the group join
            # and the first fetch (a one-off per worker start) are not counted as throughput.
            first, last = min(done.values()), max(done.values())
            first_batch = sum(1 for t in done.values() if t <= first + 0.05)
            if last > first and first_batch < len(done):
                steady = (len(done) - first_batch) / (last - first)
            else:  # everything came out in one batch: no steady state to measure
                steady = len(done) / max(last - ready_at, 1e-3)
            # The middle 80% of the labels: no start-up, no last partial batch; and the
            # longest pause between two labels, which shows a stall the rate would hide.
            times = sorted(done.values())
            low, high = times[len(times) // 10], times[(len(times) * 9) // 10]
            middle = 0.8 * len(times) / (high - low) if high > low else steady
            longest_gap = max((b - a for a, b in pairwise(times)), default=0)
            print(
                f"full pipeline: {len(done)} tickets, {steady:.1f} tickets/s steady; worker "
                f"ready after {ready_at - started:.1f}s, first label after "
                f"{first - started:.1f}s",
                flush=True,
            )
            rate = steady / 2
            print(f"latency at {rate:.1f} tickets/s (half capacity), {len(paced)} tickets:")
            sent_at: dict[str, float] = {}
            producer = Producer({**config, "linger.ms": 0})
            for ticket in paced:
                sent_at[ticket["ticket_id"]] = time.time()
                producer.produce(topics["tickets"], encode_event(ticket), ticket["ticket_id"])
                producer.poll(0)
                time.sleep(1 / rate)
            producer.flush(30)
            seen = output_timestamps(
                bootstrap, topics["labeled"], len(bulk) + len(paced), timeout_s=600
            )
            latencies = [seen[i] - sent_at[i] for i in sent_at if i in seen]
            rss = peak_rss_mb(worker.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                metrics_text = reply.read().decode()
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
    return {
        "n": len(done),
        "pipeline_tickets_per_s": round(steady, 2),
        "pipeline_tickets_per_s_from_ready": round(len(done) / (last - ready_at), 2),
        "pipeline_tickets_per_s_middle_80pct": round(middle, 2),
        "longest_gap_between_labels_s": round(longest_gap, 3),
        "cold_start_ready_s": round(ready_at - started, 2),
        "cold_start_first_label_s": round(first - started, 2),
        "latency_rate_per_s": round(rate, 2),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p99_s": round(percentile(latencies, 99), 3),
        "latency_samples": len(latencies),
        "worker_peak_rss_mb": round(rss, 1),
        "worker_cores_busy_during_bulk": round(cores_busy, 2),
        "worker_stage_seconds": stage_seconds(metrics_text),
        "worker_pipeline_rows": pipeline_rows(metrics_text),
        "worker_incidents_opened": sample_value(metrics_text, "ticketflow_incidents_opened_total"),
    }


def sample_value(metrics_text: str, name: str) -> float:
    """The value of an unlabelled sample, 0 when the worker does not export it."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def pipeline_rows(metrics_text: str) -> dict[str, float]:
    """ticketflow_pipeline_rows_total by kind (escalated, cache_hit, cache_miss)."""
    rows: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("ticketflow_pipeline_rows_total{"):
            kind = line.split('kind="')[1].split('"')[0]
            rows[kind] = float(line.split()[-1])
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-bench-"))
    tickets = generate_tickets(args.n + args.latency_n, seed=99)
    if args.incidents:
        # A live stream: event time is arrival (the Kafka timestamp), so the detector's
        # window holds the run's tickets (up to INCIDENT_* max_window), not the generated
        # created_at dates days apart, where it would have nothing to compare.
        tickets = [{k: v for k, v in t.items() if k != "created_at"} for t in tickets]
    bulk, paced = tickets[: args.n], tickets[args.n :]
    texts = build_texts([Ticket.model_validate(t) for t in bulk], max_chars=settings.max_text_chars)
    texts = texts[: args.encoder_n or None]
    print(f"bare encoder, {len(texts)} texts, {args.threads} torch threads:")
    encoder_rate, batch_size = bare_encoder(texts, settings.embedding_model, args.threads)
    print(f"  -> {encoder_rate:.1f} tickets/s at batch {batch_size}")
    # A fixed size keeps two runs comparable: the probe's pick moves with the machine's load.
    batch_size = args.embedding_batch_size or batch_size

    registry = workdir / "registry"
    train_file = write_tickets(generate_tickets(args.train_n, seed=5), workdir / "train.jsonl")
    env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(registry),
        "TORCH_THREADS": str(args.threads),
        "EMBEDDING_BATCH_SIZE": str(batch_size),
    }
    subprocess.run(
        [sys.executable, "-m", "ticketflow", "train", "--data", str(train_file)],
        check=True,
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    extra_env = {
        "WORKER_BATCH_MAX": str(args.batch_max or batch_size),
        "WORKER_COMMIT_EVERY_BATCH": str(args.commit == "batch").lower(),
    }
    # One setting off and on, alternated: the comparisons the issues asked for.
    ab = (
        ("INCIDENTS_ENABLED", "false", "true")
        if args.incidents
        else ("SIMILAR_K", "0", str(args.similar_k))
        if args.similar_k
        else None
    )
    if ab is not None:
        return {
            "n": len(bulk),
            "torch_threads": args.threads,
            "encoder_batch_size": batch_size,
            "encoder_tickets_per_s": round(encoder_rate, 2),
            **alternate(settings, workdir, env, bulk, paced, extra_env, args.pairs, ab),
        }
    stream = measure_stream(settings, workdir, env, bulk, paced, extra_env=extra_env)
    pipeline_rate = stream["pipeline_tickets_per_s"]
    result = {
        "n": len(bulk),
        "torch_threads": args.threads,
        "encoder_batch_size": batch_size,
        "worker_batch_max": args.batch_max or batch_size,
        "commit": args.commit,
        "encoder_tickets_per_s": round(encoder_rate, 2),
        "ratio": round(pipeline_rate / encoder_rate, 3),
        **stream,
    }
    return result


def alternate(
    settings: Settings,
    workdir: Path,
    env: dict[str, str],
    bulk: list[dict[str, Any]],
    paced: list[dict[str, Any]],
    extra_env: dict[str, str],
    pairs: int,
    setting: tuple[str, str, str],
) -> dict[str, Any]:
    """Throughput with ``setting`` = (name, off, on) at each value, alternated ``pairs``
    times on the same machine minutes apart (speeds drift over minutes: only the ratio within
    a pair means anything); each run starts from an empty vector store and its own topics."""
    name, off, on = setting
    runs: list[dict[str, Any]] = []
    for pair in range(pairs):
        for value in (off, on):
            print(f"pair {pair + 1}, {name}={value}:", flush=True)
            stream = measure_stream(
                settings,
                workdir,
                env,
                bulk,
                paced,
                extra_env={
                    **extra_env,
                    name: value,
                    "CHROMA_PATH": str(workdir / f"chroma-{name.lower()}-{pair}-{value}"),
                },
            )
            runs.append({"pair": pair + 1, name.lower(): value, **stream})
    ratios = [
        b["pipeline_tickets_per_s"] / a["pipeline_tickets_per_s"]
        for a, b in zip(runs[::2], runs[1::2], strict=True)
    ]
    return {
        "setting": name,
        "off": off,
        "on": on,
        "ratios_on_over_off": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=600, help="tickets pre-published for throughput")
    parser.add_argument("--latency-n", type=int, default=200, help="tickets paced for latency")
    parser.add_argument("--train-n", type=int, default=400, help="tickets to train the model on")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--batch-max", type=int, default=0, help="WORKER_BATCH_MAX (default: best encoder batch)"
    )
    parser.add_argument(
        "--encoder-n", type=int, default=0, help="texts for the bare encoder (default: --n)"
    )
    parser.add_argument(
        "--embedding-batch-size",
        type=int,
        default=0,
        help="the worker's EMBEDDING_BATCH_SIZE (default: the bare encoder's best)",
    )
    parser.add_argument(
        "--commit",
        choices=("batch", "interval"),
        default="batch",
        help="offset commits: after every batch (the default) or on the timer only",
    )
    parser.add_argument(
        "--similar-k", type=int, default=0, help="compare SIMILAR_K=0 with this k (0 = skip)"
    )
    parser.add_argument(
        "--incidents",
        action="store_true",
        help="compare INCIDENTS_ENABLED=false with true (the emerging-incident detector)",
    )
    parser.add_argument(
        "--pairs", type=int, default=2, help="with --similar-k or --incidents: runs of each"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if "setting" in result:
        name = result["setting"]
        for r in result["runs"]:
            print(
                f"pair {r['pair']} {name}={r[name.lower()]}: {r['pipeline_tickets_per_s']}/s "
                f"(middle 80%: {r['pipeline_tickets_per_s_middle_80pct']}/s), p50 "
                f"{r['latency_p50_s']}s p99 {r['latency_p99_s']}s, incidents opened "
                f"{r.get('worker_incidents_opened', 0):.0f}, stages {r['worker_stage_seconds']}"
            )
        print(
            f"RESULT {name}={result['on']} / {name}={result['off']} throughput: "
            f"{result['ratios_on_over_off']} (median {result['ratio_median']}; target >= 0.90)"
        )
        return
    print(
        f"RESULT encoder {result['encoder_tickets_per_s']}/s, pipeline "
        f"{result['pipeline_tickets_per_s']}/s, ratio {result['ratio']} (target >= 0.90); "
        f"p50 {result['latency_p50_s']}s p99 {result['latency_p99_s']}s at "
        f"{result['latency_rate_per_s']}/s; worker peak RSS {result['worker_peak_rss_mb']} MB"
    )


if __name__ == "__main__":
    main()
