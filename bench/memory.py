"""Benchmark: which vectors should "similar tickets" search, the static or the transformer's?

    python -m bench.memory [--datasets ../shared/datasets] [--altered 500] [--endava-rows 4000]

For each data set, every ticket is embedded as the worker embeds it (the model text of
build_texts, MAX_TEXT_CHARS) by both encoders of the cascade: the static model2vec model (what
the vector store holds with CASCADE=true) and the transformer (EMBEDDING_BACKEND, cut at
EMBEDDING_MAX_TOKENS). Two questions, exact cosine search over all tickets:

- near-duplicate recall: altered copies of ``--altered`` tickets (words dropped from the body,
  tags reordered and one dropped, the subject's case changed, and all three at once) are
  searched; a hit is the original among the nearest 1 / 5.
- same-label precision@5: for every ticket, the share of its 5 nearest other tickets that
  have its label (the chance level, sum of squared class shares, is printed next to it).

Prints a markdown table (docs/memory.md) and the seconds each encoder took.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ticketflow.batch import configured
from ticketflow.batch.experiments import default_datasets_dir
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.models.embedding import Encoder
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

Alteration = Callable[[Ticket, random.Random], Ticket]


def drop_words(ticket: Ticket, rng: random.Random, share: float = 0.2) -> Ticket:
    """Drop ``share`` of the body's words (at least one), keeping their order."""
    words = (ticket.body or "").split()
    if len(words) < 2:
        return ticket
    drop = set(rng.sample(range(len(words)), max(1, round(len(words) * share))))
    body = " ".join(w for i, w in enumerate(words) if i not in drop)
    return ticket.model_copy(update={"body": body})


def shuffle_tags(ticket: Ticket, rng: random.Random) -> Ticket:
    """Tags in another order, one of them dropped (when there are two or more)."""
    tags = list(ticket.tags)
    rng.shuffle(tags)
    if len(tags) >= 2:
        tags.pop(rng.randrange(len(tags)))
    return ticket.model_copy(update={"tags": tags})


def change_case(ticket: Ticket, rng: random.Random) -> Ticket:
    """The subject in upper, lower or title case (whichever differs from it)."""
    subject = ticket.subject or ""
    options = [s for s in (subject.upper(), subject.lower(), subject.title()) if s != subject]
    return ticket.model_copy(update={"subject": rng.choice(options) if options else subject})


def all_three(ticket: Ticket, rng: random.Random) -> Ticket:
    return change_case(shuffle_tags(drop_words(ticket, rng), rng), rng)


ALTERATIONS: dict[str, Alteration] = {
    "words dropped (20%)": drop_words,
    "tags reordered, one dropped": shuffle_tags,
    "subject case changed": change_case,
    "all three": all_three,
}


def altered_copies(tickets: Sequence[Ticket], alteration: Alteration, *, seed: int) -> list[Ticket]:
    """One altered copy per ticket; the copy's id is ``<id>~altered`` (the original's is kept
    apart so a search can tell them apart)."""
    rng = random.Random(seed)
    return [
        alteration(t, rng).model_copy(update={"ticket_id": f"{t.ticket_id}~altered"})
        for t in tickets
    ]


@dataclass
class Space:
    name: str
    vectors: npt.NDArray[np.float32]  # L2-normalised, one row per ticket
    encoder: Encoder
    seconds: float


def _normalise(matrix: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.asarray(m / np.maximum(norms, 1e-12), dtype=np.float32)


def embed(encoder: Encoder, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], float]:
    started = time.perf_counter()
    vectors = _normalise(encoder.encode(list(texts), show_progress=True))
    return vectors, time.perf_counter() - started


def recall_at(
    originals: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    rows: Sequence[int],
    ks: Sequence[int] = (1, 5),
) -> dict[int, float]:
    """Share of queries whose original (row ``rows[i]`` of ``originals``) is in the top k."""
    scores = queries @ originals.T
    own = scores[np.arange(len(rows)), np.asarray(rows)]
    # Rank = how many originals score strictly higher than the true one (ties favour it).
    rank = (scores > own[:, None]).sum(axis=1)
    return {k: float(np.mean(rank < k)) for k in ks}


def same_label_precision(
    vectors: npt.NDArray[np.float32], labels: Sequence[str], k: int = 5, block: int = 1024
) -> float:
    """Mean share of each ticket's k nearest other tickets that carry its label."""
    y = np.asarray(labels)
    hits = 0.0
    for start in range(0, len(vectors), block):
        scores = vectors[start : start + block] @ vectors.T
        for i in range(scores.shape[0]):
            scores[i, start + i] = -np.inf  # not itself
        nearest = np.argpartition(-scores, k, axis=1)[:, :k]
        hits += float((y[nearest] == y[start : start + scores.shape[0], None]).sum())
    return hits / (len(vectors) * k)


def chance(labels: Sequence[str]) -> float:
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    shares = counts / counts.sum()
    return float((shares**2).sum())


def bench_dataset(
    name: str,
    tickets: list[Ticket],
    labels: list[str],
    encoders: dict[str, Encoder],
    *,
    max_chars: int,
    altered: int,
    seed: int,
    alterations: dict[str, Alteration],
) -> list[dict[str, Any]]:
    texts = build_texts(tickets, max_chars=max_chars)
    rng = random.Random(seed)
    rows = sorted(rng.sample(range(len(tickets)), min(altered, len(tickets))))
    copies = {
        kind: build_texts(
            altered_copies([tickets[r] for r in rows], alteration, seed=seed), max_chars=max_chars
        )
        for kind, alteration in alterations.items()
    }
    results = []
    for space, encoder in encoders.items():
        vectors, seconds = embed(encoder, texts)
        row: dict[str, Any] = {
            "dataset": name,
            "vectors": space,
            "model": encoder.name,
            "dimension": encoder.dimension,
            "tickets": len(tickets),
            "tickets_per_s": len(tickets) / seconds,
            "precision@5": same_label_precision(vectors, labels),
            "chance": chance(labels),
            "recall": {},
        }
        for kind, queries in copies.items():
            altered_vectors, _ = embed(encoder, queries)
            row["recall"][kind] = recall_at(vectors, altered_vectors, rows)
        results.append(row)
        print(f"{name} {space}: done in {seconds:.0f}s", flush=True)
    return results


def markdown(results: Sequence[dict[str, Any]], kinds: Sequence[str]) -> str:
    head = ["data set", "vectors", "same-label P@5 (chance)"]
    head += [f"{kind}: R@1 / R@5" for kind in kinds]
    head += ["embed tickets/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [
            f"{r['dataset']} ({r['tickets']})",
            f"{r['vectors']} ({r['dimension']}-d)",
            f"{r['precision@5']:.3f} ({r['chance']:.3f})",
        ]
        for kind in kinds:
            got = r["recall"].get(kind)
            cells.append(f"{got[1]:.3f} / {got[5]:.3f}" if got else "–")
        cells.append(f"{r['tickets_per_s']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--datasets",
        type=Path,
        default=default_datasets_dir(),
        help="folder holding bueck-v3/ and endava-it/",
    )
    parser.add_argument("--altered", type=int, default=500, help="altered copies per kind")
    parser.add_argument(
        "--endava-rows", type=int, default=4000, help="rows sampled from endava-it (0 = skip)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    settings = Settings()
    encoders: dict[str, Encoder] = {
        "static": configured.static_encoder(settings),
        "transformer": configured.encoder(settings),
    }
    results: list[dict[str, Any]] = []
    bueck = load_labeled(
        args.datasets / "bueck-v3" / "tickets.csv", targets=["queue"], progress=False
    )
    results += bench_dataset(
        "bueck-v3",
        bueck.tickets,
        bueck.labels["queue"],
        encoders,
        max_chars=settings.max_text_chars,
        altered=args.altered,
        seed=args.seed,
        alterations=ALTERATIONS,
    )
    endava_path = args.datasets / "endava-it" / "tickets.csv"
    if args.endava_rows and endava_path.is_file():
        endava = load_labeled(
            endava_path,
            targets=["Topic_group"],
            mapping=ColumnMapping.parse(["body=Document"]),
            progress=False,
        )
        rng = random.Random(args.seed)
        rows = sorted(rng.sample(range(len(endava.tickets)), args.endava_rows))
        results += bench_dataset(
            "endava-it",
            [endava.tickets[r] for r in rows],
            [endava.labels["Topic_group"][r] for r in rows],
            encoders,
            max_chars=settings.max_text_chars,
            altered=args.altered,
            seed=args.seed,
            # No subject and no tags in this set: only the body can be altered.
            alterations={"words dropped (20%)": drop_words},
        )
    print()
    print(markdown(results, list(ALTERATIONS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
