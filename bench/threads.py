"""Benchmark: N processes × 1 encoder thread vs 1 process × N threads, same texts, one run.

    python -m bench.threads [--backend onnx-int8] [--processes 2] [--n 256]

Answers "scale out or up?" for the encoder, the cost that dominates a worker: every process
encodes the same ``--n`` bueck-v3 texts (or sample tickets when the data set is absent) in
micro-batches of 32, started together; the aggregate is total tickets / wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

from ticketflow.batch.experiments import default_datasets_dir
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.encoders import BACKENDS, encoders_root, load_encoder
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

REPO = Path(__file__).resolve().parents[1]
BATCH = 32


def probe_texts(n: int, max_chars: int) -> list[str]:
    path = default_datasets_dir() / "bueck-v3" / "tickets.csv"
    if path.is_file():
        data = load_labeled(
            path, targets=["queue"], mapping=ColumnMapping.parse([]), progress=False
        )
        tickets = data.tickets[:n]
    else:
        tickets = [Ticket.model_validate(r) for r in generate_tickets(n, seed=7)]
    return build_texts(tickets, max_chars=max_chars)


def encode_all(
    backend: str, threads: int, texts: list[str], start: Any, registry: Path, cache: Path
) -> float:
    encoder = load_encoder(
        Settings().embedding_model,
        backend,  # type: ignore[arg-type]
        export_root=encoders_root(registry),
        cache_root=cache,
        threads=threads,
        max_tokens=Settings().embedding_max_tokens,
    )
    encoder.encode(texts[:8])
    start.wait()  # every process starts encoding at the same moment
    began = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        encoder.encode(texts[i : i + BATCH])
    return time.perf_counter() - began


def _child(backend: str, threads: int, texts: list[str], start: Any, out: Any, dirs: Any) -> None:
    out.put(encode_all(backend, threads, texts, start, *dirs))


def run_group(backend: str, processes: int, threads: int, texts: list[str]) -> float:
    """Aggregate tickets/s of ``processes`` processes with ``threads`` threads each."""
    settings = Settings()
    dirs = (settings.model_registry_dir, settings.cache_dir / "encoders")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    out = context.Queue()
    children = [
        context.Process(target=_child, args=(backend, threads, texts, start, out, dirs))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    seconds = [float(out.get(timeout=1800)) for _ in children]
    for child in children:
        child.join()
    return processes * len(texts) / max(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=BACKENDS, default="onnx-int8")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "threads.json")
    args = parser.parse_args()
    texts = probe_texts(args.n, Settings().max_text_chars)
    one = run_group(args.backend, 1, args.processes, texts)
    print(f"1 process × {args.processes} threads: {one:.1f} tickets/s", flush=True)
    many = run_group(args.backend, args.processes, 1, texts)
    print(f"{args.processes} processes × 1 thread: {many:.1f} tickets/s aggregate", flush=True)
    result: dict[str, Any] = {
        "backend": args.backend,
        "texts": len(texts),
        "one_process_threads": args.processes,
        "one_process_tickets_per_s": round(one, 2),
        "processes": args.processes,
        "processes_tickets_per_s": round(many, 2),
        "ratio": round(many / one, 3),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
