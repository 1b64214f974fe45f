"""Proof of horizontal scale: two 1-thread workers vs one 2-thread worker, failover, rejoin.

    python -m bench.scale [--n 1200] [--partitions 4] [--session-timeout 10]

On one broker (KAFKA_BOOTSTRAP_SERVERS or a private jar-based one) and one ChromaDB server
(``chroma run``, the server the chromadb package ships; several workers need it):

1. one worker, ``TORCH_THREADS=2``: N tickets on a fresh 4-partition topic, tickets/s;
2. two workers, ``TORCH_THREADS=1`` each, one consumer group: every partition assigned,
   N tickets on a fresh topic, aggregate tickets/s (target >= 0.9 x step 1);
3. SIGKILL one of them mid-stream: time until the survivor owns every partition (the group
   notices a killed member after ``BROKER_SESSION_TIMEOUT``), every ticket still labelled;
4. start it again: the partitions split again and both workers label tickets.

Workers start and join the group before the tickets are published, so the throughput
numbers measure labelling, not group joins. Results go to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from bench.pipeline import kafka, wait_ready
from ticketflow.adapters.kafka.clients import encode_event, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import free_port, wait_for_port
from ticketflow.devtools.sample import generate_tickets, write_tickets

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    name: str
    threads: int
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.log_dir / f"{self.name}.log").open("ab")
        env = {
            **self.env,
            "TORCH_THREADS": str(self.threads),
            "METRICS_PORT": str(self.port),
            "BROKER_CLIENT_ID": self.name,  # Faust reads it: names the member in the group
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ticketflow", "worker", "--no-create-topics"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> float:
        assert self.process is not None
        return wait_ready(self.port, self.process)

    def labeled(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("ticketflow_tickets_labeled_total "):
                    return int(float(line.split()[-1]))
        return 0

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(timeout=10)


def assignment(admin: AdminClient, group: str, topic: str) -> dict[str, list[int]]:
    """Partitions of ``topic`` per member (client id) of ``group``; empty while rebalancing."""
    try:
        description = admin.describe_consumer_groups([group])[group].result()
    except Exception:  # the group may not exist yet
        return {}
    if str(description.state).rsplit(".", 1)[-1] != "STABLE":
        return {}
    return {
        m.client_id: sorted(
            tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic
        )
        for m in description.members
    }


def wait_assignment(
    admin: AdminClient, group: str, topic: str, members: int, partitions: int, timeout_s: float
) -> tuple[float, dict[str, list[int]]]:
    """Wait until ``members`` members each own partitions and together all of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = assignment(admin, group, topic)
        owned = sorted(p for parts in found.values() for p in parts)
        if len(found) == members and all(found.values()) and owned == list(range(partitions)):
            return time.time(), found
        time.sleep(0.2)
    raise RuntimeError(f"group {group}: no {members}-member assignment of {topic} in time")


@dataclass
class Output:
    first: dict[str, tuple[float, int]]  # ticket_id -> (timestamp s, source partition)
    records: int


def read_output(bootstrap: str, topic: str, want: set[str], timeout_s: float) -> Output:
    """Labelled records of ``topic`` from the start, until every id in ``want`` is seen."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"scale-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    first: dict[str, tuple[float, int]] = {}
    records = 0
    deadline = time.monotonic() + timeout_s
    try:
        while not want <= first.keys() and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            record = json.loads(message.value() or b"{}")
            records += 1
            first.setdefault(
                record["ticket_id"],
                (message.timestamp()[1] / 1000, int(record["source"]["partition"])),
            )
    finally:
        consumer.close()
    return Output(first=first, records=records)


def publish(bootstrap: str, topic: str, tickets: list[dict[str, Any]]) -> float:
    start = time.time()
    produce_raw(
        {"bootstrap.servers": bootstrap},
        topic,
        [(t["ticket_id"].encode(), encode_event(t)) for t in tickets],
    )
    return start


@dataclass
class Phase:
    bootstrap: str
    suffix: str
    partitions: int
    base_env: dict[str, str]
    log_dir: Path

    @property
    def topic_in(self) -> str:
        return f"scale-in-{self.suffix}"

    @property
    def topic_out(self) -> str:
        return f"scale-out-{self.suffix}"

    @property
    def group(self) -> str:
        return f"scale-{self.suffix}"

    def setup(self, threads: list[int]) -> tuple[list[Worker], dict[str, list[int]]]:
        topics = [self.topic_in, self.topic_out, f"scale-dlq-{self.suffix}"]
        topics.append(f"scale-mon-{self.suffix}")
        create_topics(
            {"bootstrap.servers": self.bootstrap},
            topics,
            partitions=self.partitions,
            replication=1,
        )
        env = {
            **self.base_env,
            "KAFKA_TOPIC_TICKETS": self.topic_in,
            "KAFKA_TOPIC_LABELED": self.topic_out,
            "KAFKA_TOPIC_DLQ": f"scale-dlq-{self.suffix}",
            "KAFKA_TOPIC_MONITOR": f"scale-mon-{self.suffix}",
            "WORKER_APP_ID": self.group,
        }
        workers = [
            Worker(f"{self.suffix}-w{i}", t, env, self.log_dir) for i, t in enumerate(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        _, found = wait_assignment(
            admin, self.group, self.topic_in, len(workers), self.partitions, timeout_s=180
        )
        return workers, found

    def throughput(self, workers: list[Worker], tickets: list[dict[str, Any]]) -> dict[str, Any]:
        before = [w.labeled() for w in workers]
        start = publish(self.bootstrap, self.topic_in, tickets)
        ids = {t["ticket_id"] for t in tickets}
        out = read_output(self.bootstrap, self.topic_out, ids, timeout_s=1800)
        missing = len(ids - out.first.keys())
        stamps = sorted(out.first[i][0] for i in ids if i in out.first)
        first, last = stamps[0], stamps[-1]
        first_batch = sum(1 for s in stamps if s <= first + 0.05)
        time.sleep(2)  # a worker counts a batch after its acks; the reader may be quicker
        return {
            "tickets": len(ids),
            "missing": missing,
            "tickets_per_s": round(len(stamps) / (last - start), 2),
            "tickets_per_s_steady": round((len(stamps) - first_batch) / (last - first), 2),
            "per_worker_labeled": [w.labeled() - b for w, b in zip(workers, before, strict=True)],
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-scale-"))
    print(f"work dir {workdir}")
    registry = workdir / "registry"
    train_file = write_tickets(generate_tickets(args.train_n, seed=5), workdir / "train.jsonl")
    base_env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(registry),
        "EMBEDDING_BATCH_SIZE": str(args.encoder_batch),
        "WORKER_BATCH_MAX": str(args.batch_max),
        "METRICS_BIND": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        # Faust reads this from the environment: how long the group waits for a member that
        # stopped heart-beating (a SIGKILLed one) before giving its partitions away.
        "BROKER_SESSION_TIMEOUT": str(args.session_timeout),
    }
    subprocess.run(
        [sys.executable, "-m", "ticketflow", "train", "--data", str(train_file)],
        check=True,
        env={**base_env, "TORCH_THREADS": "2"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    chroma_port = free_port()
    chroma = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "chroma"),
            "run",
            "--path",
            str(workdir / "chroma"),
            "--host",
            "127.0.0.1",
            "--port",
            str(chroma_port),
        ],
        stdout=(workdir / "chroma.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if not wait_for_port("127.0.0.1", chroma_port, 120):
        raise RuntimeError("chroma server did not start")
    base_env.update(CHROMA_HOST="127.0.0.1", CHROMA_PORT=str(chroma_port))
    tickets = generate_tickets(2 * args.n + args.failover_n + args.rejoin_n, seed=99)
    parts = args.partitions
    workers: list[Worker] = []
    result: dict[str, Any] = {
        "partitions": parts,
        "n": args.n,
        "broker_session_timeout_s": args.session_timeout,
        "load_average_at_start": os.getloadavg(),
    }
    try:
        with kafka(settings, workdir) as bootstrap:
            try:
                base_env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
                admin = AdminClient({"bootstrap.servers": bootstrap})

                # 1. one worker, two encoder threads
                single = Phase(bootstrap, "one-" + uuid.uuid4().hex[:6], parts, base_env, workdir)
                workers, found = single.setup([2])
                result["single"] = {
                    "assignment": found,
                    **single.throughput(workers, tickets[: args.n]),
                }
                print(f"1 worker x 2 threads: {result['single']}")
                for w in workers:
                    w.stop()

                # 2. two workers, one encoder thread each, one group
                pair = Phase(bootstrap, "two-" + uuid.uuid4().hex[:6], parts, base_env, workdir)
                workers, found = pair.setup([1, 1])
                batch = tickets[args.n : 2 * args.n]
                result["pair"] = {"assignment": found, **pair.throughput(workers, batch)}
                result["ratio"] = round(
                    result["pair"]["tickets_per_s"] / result["single"]["tickets_per_s"], 3
                )
                print(f"2 workers x 1 thread: {result['pair']}; ratio {result['ratio']}")

                # 3. SIGKILL one mid-stream
                victim = workers[1]
                victim_parts = found[victim.name]
                burst = tickets[2 * args.n : 2 * args.n + args.failover_n]
                publish(bootstrap, pair.topic_in, burst)
                ids = {t["ticket_id"] for t in burst}
                time.sleep(args.kill_after)
                killed_at = time.time()
                victim.signal(signal.SIGKILL)
                assert victim.process is not None
                victim.process.wait()
                owned_at, alone = wait_assignment(
                    admin, pair.group, pair.topic_in, 1, parts, timeout_s=300
                )
                out = read_output(bootstrap, pair.topic_out, ids, timeout_s=1800)
                resumed = [
                    ts for ts, p in out.first.values() if p in victim_parts and ts > killed_at
                ]
                result["failover"] = {
                    "tickets": len(ids),
                    "missing": len(ids - out.first.keys()),
                    "labelled_records_in_topic": out.records,
                    "victim_partitions": victim_parts,
                    "survivor_assignment": alone,
                    "rebalance_s": round(owned_at - killed_at, 2),
                    "victim_partitions_resumed_after_s": (
                        round(min(resumed) - killed_at, 2) if resumed else None
                    ),
                }
                print(f"SIGKILL one: {result['failover']}")

                # 4. start it again: the load splits again
                victim.start()
                ready_at = victim.wait_ready()
                rejoined_at, split = wait_assignment(
                    admin, pair.group, pair.topic_in, 2, parts, timeout_s=300
                )
                rest = tickets[2 * args.n + args.failover_n :]
                result["rejoin"] = {
                    "assignment": split,
                    "rejoin_s_after_ready": round(rejoined_at - ready_at, 2),
                    **pair.throughput(workers, rest),
                }
                print(f"restarted: {result['rejoin']}")
            finally:
                for w in workers:  # before the broker goes: a stopping worker commits
                    w.stop()
    finally:
        for w in workers:
            w.stop()
        with suppress(ProcessLookupError):
            os.killpg(chroma.pid, signal.SIGTERM)
        chroma.wait(timeout=30)
    result["load_average_at_end"] = os.getloadavg()
    single_rate = result["single"]["tickets_per_s"]
    rejoin = result["rejoin"]
    result["passed"] = bool(
        result["ratio"] >= 0.9
        and all(len(p) > 0 for p in result["pair"]["assignment"].values())
        and result["failover"]["missing"] == 0
        and list(result["failover"]["survivor_assignment"].values()) == [list(range(parts))]
        and rejoin["missing"] == 0
        and all(n > 0 for n in rejoin["per_worker_labeled"])
        and single_rate > 0
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1200, help="tickets per throughput run")
    parser.add_argument("--failover-n", type=int, default=800, help="tickets around the kill")
    parser.add_argument("--rejoin-n", type=int, default=400, help="tickets after the restart")
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds before SIGKILL")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--train-n", type=int, default=400)
    parser.add_argument("--encoder-batch", type=int, default=16)
    parser.add_argument("--batch-max", type=int, default=64)
    parser.add_argument("--session-timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    print(
        f"RESULT 1x2 threads {result['single']['tickets_per_s']}/s, 2x1 thread "
        f"{result['pair']['tickets_per_s']}/s, ratio {result['ratio']} (target >= 0.90); "
        f"SIGKILL -> survivor owns all {args.partitions} partitions after "
        f"{result['failover']['rebalance_s']}s, missing {result['failover']['missing']}; "
        f"rejoin split {result['rejoin']['assignment']} "
        f"labelled {result['rejoin']['per_worker_labeled']}; passed={result['passed']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
