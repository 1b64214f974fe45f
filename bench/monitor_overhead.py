"""Benchmark: worker throughput with the drift monitor running vs. without, in one run.

    python -m bench.monitor_overhead [--n 800]

Phase A: the worker with MONITOR_ENABLED=false and no monitor process.
Phase B: the worker publishing monitor records and `ticketflow monitor` consuming them.
Same model, same tickets (each phase reads its own copy of the input topic), same threads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.pipeline import REPO, kafka, output_timestamps, wait_ready
from ticketflow.adapters.kafka.clients import encode_event, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets, write_tickets


def phase(
    env: dict[str, str], bootstrap: str, tickets: list[dict[str, object]], *, monitor: bool
) -> float:
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"bench-{k}-{suffix}" for k in ("in", "out", "dlq", "mon", "drift")}
    config = {"bootstrap.servers": bootstrap}
    create_topics(config, list(names.values()), partitions=3, replication=1)
    produce_raw(
        config, names["in"], [(str(t["ticket_id"]).encode(), encode_event(t)) for t in tickets]
    )
    port, monitor_port = free_port(), free_port()
    env = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_TICKETS": names["in"],
        "KAFKA_TOPIC_LABELED": names["out"],
        "KAFKA_TOPIC_DLQ": names["dlq"],
        "KAFKA_TOPIC_MONITOR": names["mon"],
        "KAFKA_TOPIC_DRIFT": names["drift"],
        "MONITOR_ENABLED": "true" if monitor else "false",
        "MONITOR_APP_ID": f"bench-monitor-{suffix}",
        "MONITOR_METRICS_PORT": str(monitor_port),
        "WORKER_APP_ID": f"bench-{suffix}",
        "METRICS_PORT": str(port),
        "METRICS_BIND": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    processes = []
    if monitor:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "ticketflow", "monitor"],
                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "ticketflow", "worker"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    processes.append(worker)
    try:
        wait_ready(port, worker)
        done = output_timestamps(bootstrap, names["out"], len(tickets), timeout_s=1800)
        first, last = min(done.values()), max(done.values())
        first_batch = sum(1 for t in done.values() if t <= first + 0.05)
        return (len(done) - first_batch) / (last - first)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "monitor.json")
    args = parser.parse_args()
    settings = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-monitor-bench-"))
    train_file = write_tickets(generate_tickets(400, seed=5), workdir / "train.jsonl")
    env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(workdir / "registry"),
        "CHROMA_PATH": str(workdir / "chroma"),
        "DRIFT_REFERENCE_DIR": str(workdir / "reference"),
        "TORCH_THREADS": str(args.threads),
    }
    run = [sys.executable, "-m", "ticketflow"]
    subprocess.run([*run, "train", "--data", str(train_file)], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*run, "drift", "reference", "--data", str(train_file)], check=True, env=env,
                   cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    tickets = generate_tickets(args.n, seed=31)
    with kafka(settings, workdir) as bootstrap:
        without = phase(env, bootstrap, tickets, monitor=False)
        print(f"without monitor: {without:.1f} tickets/s")
        with_monitor = phase(env, bootstrap, tickets, monitor=True)
        print(f"with monitor:    {with_monitor:.1f} tickets/s")
    result = {
        "n": args.n,
        "without_monitor_tickets_per_s": round(without, 2),
        "with_monitor_tickets_per_s": round(with_monitor, 2),
        "ratio": round(with_monitor / without, 3),
    }
    print(json.dumps(result, indent=2))
    print(f"RESULT with/without monitor: {result['ratio']} (target >= 0.95)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
