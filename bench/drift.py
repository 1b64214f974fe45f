"""Drift monitor on real embeddings: false alarms in distribution, detection on shifted streams.

    python -m bench.drift --registry PATH [--window 200] [--windows 5] [--reference 1000]

Encodes tickets with the model's encoder once, then runs the monitor's pure drift check on
tumbling windows of: the generator's distribution (expect no drift), a queue-mix shift
(only billing and returns), and the other dataset (``../shared/datasets/bueck-v3``, when
present). Prints one line per window and writes ``bench/results/drift.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, read_table, rows_to_dicts
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.review import DEFAULT_POLICY, ReviewPolicy
from ticketflow.models.serving import make_pipeline
from ticketflow.monitoring.drift import DriftConfig, MonitorSample, detect_drift, subsample
from ticketflow.monitoring.sample import pipeline_sample
from ticketflow.runtime.loading import serving_encoders
from ticketflow.schemas import Ticket

REPO = Path(__file__).resolve().parents[1]
SHIFTED_QUEUES = {"Billing and Payments", "Returns and Exchanges"}


def sample_of(
    pipeline: LabelingPipeline, tickets: list[Ticket], review: ReviewPolicy
) -> MonitorSample:
    return pipeline_sample(pipeline, tickets, review=review)


def windows(sample: MonitorSample, size: int) -> list[MonitorSample]:
    out = []
    for start in range(0, len(sample) - size + 1, size):
        idx = list(range(start, start + size))
        out.append(
            MonitorSample(
                vectors=sample.vectors[start : start + size],
                labels={t: [v[i] for i in idx] for t, v in sample.labels.items()},
                probabilities={t: [v[i] for i in idx] for t, v in sample.probabilities.items()},
                text_lengths=[sample.text_lengths[i] for i in idx],
                languages=[sample.languages[i] for i in idx],
                needs_review=[sample.needs_review[i] for i in idx] if sample.needs_review else None,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--reference", type=int, default=1000)
    parser.add_argument("--method", default="mmd", choices=["mmd", "model", "distance", "ratio"])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "drift.json")
    args = parser.parse_args()

    model = ModelRegistry(args.registry).load()
    settings = Settings(model_registry_dir=args.registry)
    # The worker's encoders and pipeline: a cascade publishes its static vectors.
    encoders = serving_encoders(settings, model.metadata, text_cache=False)
    pipeline = make_pipeline(encoders, model)

    def tickets(rows: list[dict[str, Any]]) -> list[Ticket]:
        return [Ticket.model_validate(r) for r in rows]

    n = args.window * args.windows
    streams: dict[str, list[Ticket]] = {
        "reference": tickets(generate_tickets(args.reference, seed=1001)),
        "in_distribution": tickets(generate_tickets(n, seed=2002)),
        "queue_mix_shift": tickets(
            [
                r
                for r in generate_tickets(args.window * 12, seed=3003)
                if r["queue"] in SHIFTED_QUEUES
            ][: args.window * 2]
        ),
    }
    other = REPO.parent / "shared" / "datasets" / "bueck-v3" / "tickets.csv"
    if other.is_file():
        frame = read_table(other).head(args.window * 2)
        rows = rows_to_dicts(frame, ColumnMapping.parse([]), id_prefix="bueck")
        streams["other_dataset"] = tickets(rows)
    started = time.perf_counter()
    samples = {name: sample_of(pipeline, t, DEFAULT_POLICY) for name, t in streams.items()}
    encode_s = time.perf_counter() - started
    reference = subsample(samples.pop("reference"), args.reference)
    config = DriftConfig(embedding_method=args.method)
    results: dict[str, list[dict[str, Any]]] = {}
    for name, sample in samples.items():
        results[name] = []
        for i, window in enumerate(windows(sample, args.window)):
            r = detect_drift(reference, window, config)
            row = {
                "window": i,
                "drifted": r.drifted,
                "share_drifted": round(r.share_drifted, 3),
                "embedding_score": round(r.embedding.score, 4),
                "drifted_features": [f.feature for f in r.features if f.drifted],
                "seconds": round(r.seconds, 3),
            }
            results[name].append(row)
            print(name, json.dumps(row))
    summary = {
        "model": model.metadata.version,
        "window": args.window,
        "reference_rows": len(reference),
        "method": args.method,
        "threshold": config.threshold,
        "encode_seconds": round(encode_s, 1),
        "windows": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
