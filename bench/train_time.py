"""Training time at scale: a bigger labelled file from endava-it, and the fit alone timed.

    python -m bench.train_time make --rows 100000 --out /tmp/e100k.csv
    python -m bench.train_time fit [--rows N] [--cv-jobs J]

``make`` repeats endava-it's rows up to ``--rows``; every copy has one word dropped and two
swapped, so texts and n-grams differ from the originals (a stand-in for a larger help
desk, docs/model-quality.md "Training time at scale"). Time the whole command on it with
``/usr/bin/time -v ticketflow train --data OUT --map body=Document --target Topic_group``.

``fit`` times :func:`ticketflow.models.recipe.fit_model` alone on endava's training part
with hashed 384-d vectors: the fit's cost does not depend on what the dense block holds,
and no encoder is needed. ``--cv-jobs 1`` is the one-process baseline to compare with.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import time
from dataclasses import replace
from pathlib import Path

from ticketflow.batch.experiments import default_datasets_dir
from ticketflow.batch.train import split_indices
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.models.recipe import ModelConfig, fit_model
from ticketflow.models.text import build_texts

logger = logging.getLogger(__name__)

ENDAVA = "endava-it/tickets.csv"


def make(rows: int, out: Path, *, datasets: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    with (datasets / ENDAVA).open(newline="", encoding="utf-8") as f:
        source = list(csv.DictReader(f))
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["Document", "Topic_group"])
        writer.writeheader()
        for i in range(rows):
            row = source[i % len(source)]
            words = row["Document"].split()
            if i >= len(source) and len(words) > 3:
                del words[rng.randrange(len(words))]
                a, b = rng.randrange(len(words)), rng.randrange(len(words))
                words[a], words[b] = words[b], words[a]
            writer.writerow({"Document": " ".join(words), "Topic_group": row["Topic_group"]})
    print(f"wrote {rows} rows to {out}")


def fit(rows: int | None, cv_jobs: int | None, *, datasets: Path) -> None:
    from sklearn.feature_extraction.text import HashingVectorizer

    data = load_labeled(
        datasets / ENDAVA,
        targets=["Topic_group"],
        mapping=ColumnMapping.parse(["body=Document"]),
        progress=False,
    )
    texts = build_texts(data.tickets, max_chars=1_000)
    labels = data.labels["Topic_group"]
    if rows:
        texts, labels = texts[:rows], labels[:rows]
    train, _ = split_indices(len(texts), labels, test_size=0.2, seed=42)
    train_texts = [texts[i] for i in train]
    hashed = HashingVectorizer(n_features=384, analyzer="char_wb", ngram_range=(2, 4))
    vectors = hashed.transform(train_texts).toarray().astype("float32")
    config = replace(ModelConfig(), cv_jobs=cv_jobs)
    started = time.perf_counter()
    fit_model(
        train_texts,
        vectors,
        {"Topic_group": [labels[i] for i in train]},
        config=config,  # and the default review policy, as `ticketflow train` fits
    )
    seconds = time.perf_counter() - started
    print(f"fit_model: {len(train_texts)} training rows, cv_jobs={cv_jobs}: {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=default_datasets_dir())
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make")
    making.add_argument("--rows", type=int, default=100_000)
    making.add_argument("--out", type=Path, required=True)
    fitting = commands.add_parser("fit")
    fitting.add_argument("--rows", type=int)
    fitting.add_argument("--cv-jobs", type=int, help="processes for the CV fits (default: auto)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "make":
        make(args.rows, args.out, datasets=args.datasets)
    else:
        fit(args.rows, args.cv_jobs, datasets=args.datasets)


if __name__ == "__main__":
    main()
