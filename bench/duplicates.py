"""Benchmark: the distance below which the stream calls a ticket a possible duplicate.

    python -m bench.duplicates [--data ../shared/datasets/bueck-v3/tickets.csv] [--map F=COL]
        [--target queue] [--altered 500] [--precision 0.95]

With ``SIMILAR_K`` set, the worker publishes ``possible_duplicate_of`` = the nearest stored
ticket when its cosine distance is below ``DUPLICATE_MAX_DISTANCE``. This picks that cut on
bueck-v3 (or ``--data``: your own tickets, any column that is never empty as ``--target``),
in the space the store holds with the cascade (the static vectors, docs/memory.md):

- duplicates: ``--altered`` tickets, altered each way of bench.memory (words dropped, tags
  reordered and one dropped, subject case changed, all three); a copy is searched among the
  4,000 originals, and its nearest one should be its original;
- new tickets: every original searched among the others (itself left out), as a ticket
  that was never seen arrives. A new ticket whose nearest has the same model text is a true
  duplicate inside the data set (counted apart, not as a false alarm).

For each cut: precision of the flag (flags pointing at the true original / all flags) over
both groups together, the recall on the copies, and the share of new tickets flagged. Prints
the largest cut whose precision is at least ``--precision`` and a markdown table.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.memory import ALTERATIONS, altered_copies, embed
from ticketflow.batch import configured
from ticketflow.batch.experiments import default_datasets_dir
from ticketflow.config import Settings
from ticketflow.data.datasets import DEFAULT_MAPPING, ColumnMapping, load_labeled
from ticketflow.models.text import build_texts

CUTS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.1)


def nearest(
    queries: npt.NDArray[np.float32], stored: npt.NDArray[np.float32], exclude: Sequence[int] = ()
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Row and cosine distance of each query's nearest stored vector (both L2-normalised);
    ``exclude[i]``: a stored row query ``i`` may not match (itself). In blocks of 1,024
    queries, so a large file does not need a square matrix in memory."""
    skip = np.asarray(exclude, dtype=np.int64)
    rows, distances = [], []
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ stored.T
        block = np.arange(scores.shape[0])
        if len(skip):
            scores[block, skip[start : start + scores.shape[0]]] = -np.inf
        best = scores.argmax(axis=1)
        rows.append(best)
        distances.append(1.0 - scores[block, best])
    return np.concatenate(rows), np.concatenate(distances).astype(np.float32)


def sweep(
    copy_hit: npt.NDArray[np.bool_],
    copy_distance: npt.NDArray[np.float32],
    new_distance: npt.NDArray[np.float32],
    cuts: Sequence[float] = CUTS,
) -> list[dict[str, float]]:
    """Per cut: precision over copies and new tickets, recall on copies, new tickets flagged."""
    rows = []
    for cut in cuts:
        flagged_copies = copy_distance < cut
        right = int((flagged_copies & copy_hit).sum())
        wrong = int((flagged_copies & ~copy_hit).sum()) + int((new_distance < cut).sum())
        rows.append(
            {
                "cut": cut,
                "precision": right / (right + wrong) if right + wrong else 1.0,
                "recall": right / len(copy_hit),
                "new_flagged": float((new_distance < cut).mean()),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data", type=Path, default=default_datasets_dir() / "bueck-v3" / "tickets.csv"
    )
    parser.add_argument("--map", action="append", default=[], help="FIELD=COLUMN, as for train")
    parser.add_argument("--target", default="queue", help="a column that is never empty")
    parser.add_argument("--altered", type=int, default=500, help="altered copies per kind")
    parser.add_argument("--precision", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    settings = Settings()
    encoder = configured.static_encoder(settings)
    data = load_labeled(
        args.data,
        targets=[args.target],
        mapping=ColumnMapping.parse(args.map) if args.map else DEFAULT_MAPPING,
        progress=False,
    )
    tickets = data.tickets
    texts = build_texts(tickets, max_chars=settings.max_text_chars)
    stored, _ = embed(encoder, texts)

    # New tickets: each original against the others. Same model text = a duplicate in the data.
    rows, new_distance = nearest(stored, stored, exclude=range(len(stored)))
    same_text = np.array([texts[i] == texts[r] for i, r in enumerate(rows)])
    print(f"new tickets whose nearest other has the same text: {int(same_text.sum())}")
    new_distance = new_distance[~same_text]

    rng = random.Random(args.seed)
    picked = sorted(rng.sample(range(len(tickets)), min(args.altered, len(tickets))))
    hits, distances = [], []
    per_kind: dict[str, Any] = {}
    for kind, alteration in ALTERATIONS.items():
        copies = altered_copies([tickets[r] for r in picked], alteration, seed=args.seed)
        vectors, _ = embed(encoder, build_texts(copies, max_chars=settings.max_text_chars))
        found, distance = nearest(vectors, stored)
        # A copy whose nearest is another ticket with the very same text is still right.
        hit = np.array([f == r or texts[f] == texts[r] for f, r in zip(found, picked, strict=True)])
        hits.append(hit)
        distances.append(distance)
        per_kind[kind] = distance
    copy_hit, copy_distance = np.concatenate(hits), np.concatenate(distances)

    print(
        f"copies: {len(copy_hit)} ({len(picked)} x {len(ALTERATIONS)} alterations), nearest is "
        f"the original for {copy_hit.mean():.3f}; new tickets: {len(new_distance)}"
    )
    for kind, distance in per_kind.items():
        q = np.quantile(distance, [0.5, 0.9, 0.99, 1.0])
        print(f"  {kind}: distance to nearest p50/p90/p99/max " + " / ".join(f"{v:.3f}" for v in q))
    q = np.quantile(new_distance, [0.001, 0.01, 0.05, 0.5])
    print(
        "  new tickets: distance to nearest other p0.1/p1/p5/p50 "
        + " / ".join(f"{v:.3f}" for v in q)
    )
    table = sweep(copy_hit, copy_distance, new_distance)
    print()
    print("| cut | precision | recall (copies) | new tickets flagged |")
    print("|---:|---:|---:|---:|")
    for row in table:
        print(
            f"| {row['cut']:.4f} | {row['precision']:.3f} | {row['recall']:.3f} "
            f"| {row['new_flagged']:.4f} |"
        )
    good = [row for row in table if row["precision"] >= args.precision]
    if good:
        best = max(good, key=lambda row: row["cut"])
        print(
            f"\nRESULT cut {best['cut']}: precision {best['precision']:.3f}, recall "
            f"{best['recall']:.3f}, new tickets flagged {best['new_flagged']:.4f}"
        )
        for (kind, distance), hit in zip(per_kind.items(), hits, strict=True):
            recall = float(((distance < best["cut"]) & hit).mean())
            print(f"  recall at {best['cut']}, {kind}: {recall:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
