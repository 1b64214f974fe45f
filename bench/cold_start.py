"""Benchmark: the worker's cold start, process start → ready → first label (issue #32: ≤ 5 s).

    python -m bench.cold_start --registry DIR [--rounds 3] [--tickets 64] [--fresh-broker]
                               [--against SRC ...]

``DIR`` is a model registry with a current model (``MODEL_REGISTRY_DIR=DIR ticketflow train
...``). Each round starts ``ticketflow worker`` on fresh topics holding ``--tickets``
generated tickets (one local broker for the whole run) and times the worker's ``/readyz``
and its first labelled ticket from the process start, then stops it. ``--fresh-broker``
starts a broker of its own for each worker start instead, as ``bench.speed`` and
``bench.pipeline`` do: the broker's own start then competes with the worker's for these
cores, and the worker creates its topics and the broker its group coordinator.

``--against SRC`` times another build in the same rounds: the ``src`` directory of another
checkout (for example ``git worktree add /tmp/before HEAD~1``, then ``--against
/tmp/before/src``), put first on the worker's ``PYTHONPATH``. Run ``python -m compileall``
on it first, as ``make install`` does for this one: a build without bytecode compiles every
module at start. Builds alternate, their order rotated per round, as everywhere on these
shared cores. Results go to ``bench/results/cold_start.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.pipeline import REPO, fresh_topics, kafka, output_timestamps, spawn, wait_ready
from bench.worker_memory import summary
from ticketflow.adapters.kafka.clients import encode_event, produce_raw
from ticketflow.config import Settings
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.registry import ModelRegistry

THIS = "this checkout"


def start_once(
    bootstrap: str, workdir: Path, env: dict[str, str], tickets: list[dict[str, Any]]
) -> dict[str, float]:
    """One worker start on fresh topics holding ``tickets``: seconds to ready and to the
    first labelled ticket, from the process start."""
    suffix = uuid.uuid4().hex[:8]
    topics = fresh_topics(bootstrap, workdir / suffix, "cold")
    events = [{**t, "ticket_id": f"{t['ticket_id']}-{suffix}"} for t in tickets]
    produce_raw(
        {"bootstrap.servers": bootstrap},
        topics["KAFKA_TOPIC_TICKETS"],
        [(e["ticket_id"].encode(), encode_event(e)) for e in events],
    )
    env = {**env, **topics}
    port = int(env["METRICS_PORT"])
    with (workdir / f"worker-{suffix}.log").open("wb") as log:
        started = time.time()
        worker = spawn(["worker"], env, log)
        try:
            ready = wait_ready(port, worker)
            done = output_timestamps(
                bootstrap, topics["KAFKA_TOPIC_LABELED"], len(events), timeout_s=300
            )
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
    if not done:
        raise RuntimeError(f"no labelled ticket from the worker; see {log.name}")
    return {
        "ready_s": round(ready - started, 2),
        "first_label_s": round(min(done.values()) - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", type=Path, required=True, help="a registry with a model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tickets", type=int, default=64, help="tickets waiting at start")
    parser.add_argument(
        "--fresh-broker", action="store_true", help="a broker started for each worker start"
    )
    parser.add_argument(
        "--against", type=Path, action="append", default=[], help="another build's src dir"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cold_start.json")
    args = parser.parse_args()
    if ModelRegistry(args.registry).current_version() is None:
        raise SystemExit(f"no current model in {args.registry}: run ticketflow train first")
    for src in args.against:
        if not (src / "ticketflow" / "__init__.py").is_file():
            raise SystemExit(f"--against {src}: not a src directory holding ticketflow")
    builds = {THIS: None, **{str(src): src.resolve() for src in args.against}}
    tickets = generate_tickets(args.tickets, seed=7)
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-cold-start-"))
    base = {**os.environ, "MODEL_REGISTRY_DIR": str(args.registry)}
    base.pop("PYTHONPATH", None)
    rows: list[dict[str, Any]] = []
    names = list(builds)
    with ExitStack() as stack:
        shared = None
        if not args.fresh_broker:
            shared = stack.enter_context(kafka(Settings(), workdir / "broker"))
            # The broker's first group and topics cost more than the later ones: not timed.
            start_once(shared, workdir, base, tickets)
        for attempt in range(args.rounds):
            shift = attempt % len(names)
            for name in names[shift:] + names[:shift]:
                src = builds[name]
                env = base if src is None else {**base, "PYTHONPATH": str(src)}
                with ExitStack() as own:
                    bootstrap = shared or own.enter_context(
                        kafka(Settings(), workdir / f"broker-{attempt}-{len(rows)}")
                    )
                    timed = start_once(bootstrap, workdir, env, tickets)
                row = {"round": attempt, "build": name, **timed}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print()
    print("\n".join(summary(rows, "build", ["ready_s", "first_label_s"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"tickets": args.tickets, "fresh_broker": args.fresh_broker, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
