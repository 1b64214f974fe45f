"""Benchmark: the worker's memory and cold start (issue #32: peak RSS ≤ 500 MB, first label ≤ 5 s).

    python -m bench.worker_memory --registry DIR [--datasets ../shared/datasets] [--rounds 3]
                                  [--probe 1280] [--stream-n 800] [--skip-encoder]

``DIR`` is a model registry with a current model (``MODEL_REGISTRY_DIR=DIR ticketflow train
--data ../shared/datasets/bueck-v3/tickets.csv``, the model ``bench.speed`` streams). On
bueck-v3's test part (the split of ``ticketflow experiments``), every variant in a process of
its own, since the memory of two variants cannot be told apart within one:

1. the int8 encoder alone, as the worker makes its session and with one session option
   changed: RSS after loading and after encoding ``--probe`` texts in calls of 20 (what the
   worker escalates from a batch of 64), peak RSS, tickets/s and CPU ms per ticket;
2. the worker through Kafka (``bench.pipeline.measure_stream``: ``--stream-n`` test tickets
   pre-published, then 150 training tickets paced at half the rate) with
   ``WORKER_MALLOC_ARENAS`` at 0 (glibc's default), 2 (the default) and 4: peak RSS, cold
   start (process start → ready → first label) and tickets/s.

Rounds are interleaved with the order rotated, as everywhere on these shared cores
(``bench.rounds``). Results go to ``bench/results/worker_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.pipeline import measure_stream, peak_rss_mb
from ticketflow.batch.experiments import SEED, TEST_SIZE, default_datasets_dir
from ticketflow.batch.train import split_indices
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.models.encoders import encoders_root, load_encoder
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

REPO = Path(__file__).resolve().parents[1]
# One session option changed from what OnnxEncoder sets (name -> changes).
SESSION_VARIANTS: dict[str, dict[str, Any]] = {
    "served (no memory pattern)": {},
    "memory pattern on": {"enable_mem_pattern": True},
    "no CPU memory arena": {"enable_cpu_mem_arena": False},
    "no weight prepacking": {"session.disable_prepacking": "1"},
}
ARENAS = ["0", "2", "4"]


def rss_mb() -> float:
    return peak_rss_mb(os.getpid(), "VmRSS")


def probe_encoder(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """In this process: the served int8 encoder with ``variant``'s session changes."""
    import onnxruntime

    changes = SESSION_VARIANTS[variant]
    real_session = onnxruntime.InferenceSession

    def session(path: str, options: Any, **kwargs: Any) -> Any:
        for key, value in changes.items():
            if key.startswith("session."):
                options.add_session_config_entry(key, value)
            else:
                setattr(options, key, value)
        return real_session(path, options, **kwargs)

    onnxruntime.InferenceSession = session
    texts = bueck_test_texts(args)[: args.probe]
    settings = Settings()
    registry = ModelRegistry(args.registry)
    metadata = registry.metadata(registry.current_version() or "")
    before = rss_mb()
    encoder = load_encoder(
        metadata.embedding_model,
        "onnx-int8",
        export_root=encoders_root(args.registry),
        cache_root=settings.cache_dir / "encoders",
        threads=args.threads,
        max_tokens=metadata.embedding_max_tokens,
    )
    loaded = rss_mb()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(texts), 20):
        encoder.encode(texts[i : i + 20])
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return {
        "variant": variant,
        "load_mb": round(loaded - before, 1),
        "rss_after_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tickets_per_s": round(len(texts) / wall, 1),
        "cpu_ms_per_ticket": round(1000 * cpu / len(texts), 2),
    }


def bueck_split(datasets: Path) -> tuple[list[Ticket], list[int]]:
    """bueck-v3's tickets and the rows of its test part (the ``ticketflow experiments`` split)."""
    data = load_labeled(
        datasets / "bueck-v3" / "tickets.csv",
        targets=["queue"],
        mapping=ColumnMapping.parse([]),
        progress=False,
    )
    labels = data.labels["queue"]
    _, test_idx = split_indices(len(labels), labels, test_size=TEST_SIZE, seed=SEED)
    return data.tickets, test_idx


def bueck_test_texts(args: argparse.Namespace) -> list[str]:
    tickets, test_idx = bueck_split(args.datasets)
    texts = build_texts(tickets, max_chars=Settings().max_text_chars)
    return [texts[i] for i in test_idx]


def encoder_rounds(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = list(SESSION_VARIANTS)
    results = []
    for attempt in range(args.rounds):
        shift = attempt % len(names)
        for variant in names[shift:] + names[:shift]:
            out = subprocess.run(
                [sys.executable, "-m", "bench.worker_memory", *sys.argv[1:], "--variant", variant],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row = {"round": attempt, **json.loads(out.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def stream_rounds(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = Settings()
    tickets, test_idx = bueck_split(args.datasets)
    test_rows = set(test_idx)
    others = [i for i in range(len(tickets)) if i not in test_rows][:150]
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-worker-memory-"))
    env = {**os.environ, "MODEL_REGISTRY_DIR": str(args.registry)}
    results = []
    for attempt in range(args.rounds):
        shift = attempt % len(ARENAS)
        for arenas in ARENAS[shift:] + ARENAS[:shift]:
            events = [
                tickets[i].model_dump(mode="json", exclude_none=True)
                for i in [*test_idx[: args.stream_n], *others]
            ]
            for event in events:  # fresh ids: the store upserts by id
                event["ticket_id"] = f"{event['ticket_id']}-{uuid.uuid4().hex[:6]}"
            stream = measure_stream(
                settings,
                workdir / f"{attempt}-{arenas}",
                env,
                events[: args.stream_n],
                events[args.stream_n :],
                extra_env={"WORKER_MALLOC_ARENAS": arenas},
            )
            row = {
                "round": attempt,
                "malloc_arenas": arenas,
                "peak_rss_mb": stream["worker_peak_rss_mb"],
                "ready_s": stream["cold_start_ready_s"],
                "first_label_s": stream["cold_start_first_label_s"],
                "tickets_per_s": stream["pipeline_tickets_per_s"],
                "p99_s": stream["latency_p99_s"],
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def summary(rows: list[dict[str, Any]], key: str, columns: list[str]) -> list[str]:
    lines = [f"| {key} | " + " | ".join(f"median {c}" for c in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for name in dict.fromkeys(r[key] for r in rows):
        mine = [r for r in rows if r[key] == name]
        cells = []
        for c in columns:
            runs = ", ".join(str(r[c]) for r in mine)
            cells.append(f"{round(statistics.median(r[c] for r in mine), 2)} ({runs})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", type=Path, required=True, help="a registry with a model")
    parser.add_argument("--datasets", type=Path, default=default_datasets_dir())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe", type=int, default=1280, help="texts the encoder encodes")
    parser.add_argument("--stream-n", type=int, default=800, help="test tickets pre-published")
    parser.add_argument("--threads", type=int, default=2, help="encoder intra-op threads")
    parser.add_argument("--skip-encoder", action="store_true", help="only the worker streams")
    parser.add_argument("--variant", choices=list(SESSION_VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "worker_memory.json"
    )
    args = parser.parse_args()
    if args.variant:  # one encoder variant, in the process the parent started for it
        print(json.dumps(probe_encoder(args, args.variant)))
        return
    if ModelRegistry(args.registry).current_version() is None:
        raise SystemExit(f"no current model in {args.registry}: run ticketflow train first")
    encoder = [] if args.skip_encoder else encoder_rounds(args)
    streams = stream_rounds(args)
    print()
    if encoder:
        columns = ["load_mb", "rss_after_mb", "peak_rss_mb", "tickets_per_s", "cpu_ms_per_ticket"]
        print("\n".join(summary(encoder, "variant", columns)))
        print()
    columns = ["peak_rss_mb", "ready_s", "first_label_s", "tickets_per_s", "p99_s"]
    print("\n".join(summary(streams, "malloc_arenas", columns)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"encoder": encoder, "worker": streams}, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
