"""How far can the new queue get from K examples? The loop's data ceiling (issue #29).

``bench.loop``'s new-queue scenario, without the loop: the cascade is trained on part A (which
lacks the class) plus every ticket of stream B with its *true* label, except that only the
first K of B's tickets of the new class are kept. Each model is scored on part C, as the
loop's challengers are: the cascade, its transformer stage alone and its first stage alone.
``every`` is A and B with every label. What the loop's challengers reach after ~300 answers
is compared with the K that matches the number of the class's tickets they trained on
(docs/learning.md, "The loop's data ceiling").

    python -m bench.loop_ceiling --split-seed 7 --ks 55,110
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.loop import (
    MAX_CHARS,
    NEW,
    TARGET,
    Models,
    Row,
    class_f1,
    fit,
    macro,
    scenario,
)
from ticketflow.batch import configured
from ticketflow.batch.embedding_cache import CachedEncoder
from ticketflow.config import Settings
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.embedding import Encoder
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import Ticket

logger = logging.getLogger(__name__)


def scores(
    classifier: TicketClassifier,
    encoder: Encoder,
    static: Encoder,
    tickets: Sequence[Ticket],
    truth: Sequence[str],
) -> dict[str, float | None]:
    pipeline = LabelingPipeline(
        encoder,
        classifier,
        max_text_chars=MAX_CHARS,
        static_encoder=static if classifier.first_stage is not None else None,
    )
    predicted = [p[TARGET].label for p in pipeline.run(list(tickets)).predictions]
    return {"macro_f1": macro(truth, predicted), "new_f1": class_f1(truth, predicted, NEW)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", type=int, default=6000)
    parser.add_argument("--window", type=int, default=750)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--c", type=int, default=2000)
    parser.add_argument("--split-seed", type=int, default=7)
    parser.add_argument("--ks", default="55,110", help="the class's examples kept from B")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.scenario = "new-queue"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sc = scenario(args)
    assert sc.every is not None
    root = Path(tempfile.mkdtemp(prefix="loop-ceiling-"))
    settings = Settings(model_registry_dir=root / "registry")
    models = Models(
        CachedEncoder(configured.encoder(settings)),
        configured.static_encoder(settings),
        ModelRegistry(settings.model_registry_dir),
    )
    stream = [r for window in sc.windows for r in window]
    new_in_b = [r for r in stream if r[TARGET] == NEW]
    others = [r for r in stream if r[TARGET] != NEW]
    truth = [str(r[TARGET]) for r in sc.c]
    fields = ("ticket_id", "subject", "body")
    tickets = [Ticket.model_validate({k: r[k] for k in fields if k in r}) for r in sc.c]
    training: dict[str, list[Row]] = {
        f"K{k}": [*sc.a, *others, *new_in_b[:k]] for k in (int(x) for x in args.ks.split(","))
    }
    training["every"] = [*sc.every, *stream]
    report: dict[str, Any] = {
        "split_seed": args.split_seed,
        "sizes": {"a": len(sc.a), "b": len(stream), "c": len(sc.c)},
        "new_in_b": len(new_in_b),
        "new_in_c": truth.count(NEW),
        "models": {},
    }
    for name, rows in training.items():
        started = time.perf_counter()
        version = fit(models, root, rows, name, current=False)
        cascade = models.registry.load(version).classifier
        assert cascade.first_stage is not None
        transformer = copy.copy(cascade)
        transformer.first_stage = None
        result = {
            "new_examples": sum(r[TARGET] == NEW for r in rows),
            "cascade": scores(cascade, models.dense, models.static, tickets, truth),
            "transformer_only": scores(transformer, models.dense, models.static, tickets, truth),
            "first_stage_only": scores(
                cascade.first_stage, models.static, models.static, tickets, truth
            ),
            "fit_s": round(time.perf_counter() - started, 1),
        }
        report["models"][name] = result
        print(name, json.dumps(result), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
