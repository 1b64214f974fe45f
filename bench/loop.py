"""Does the loop learn? A closed loop on real tickets and the real encoders (issue #29).

A cascade is trained on part A; stream B arrives in windows. Each window is labelled and
stored by the serving champion exactly as the worker does it (``backfill``: the same
``LabelingPipeline``, ``Stamp`` and ChromaDB records, ``CHROMA_DOCUMENT=redacted``); simulated
agents answer up to ``--budget`` held tickets per window with the true label, in a review
order read from the store by the desk's own ``ReviewQueue``; optionally they also reassign a
share of the wrongly routed (auto-routed) tickets of the window, counted apart from the
answers; ``retrain`` (both stages, the stored text re-embedded) runs after every window and
its challenger is promoted when ``retrain`` says so. Each window reports the serving model's
macro-F1 on the window it labels (the tickets that arrived after the last retrain), its
auto-routed share and that share's precision; every challenger is also scored on part C (a
fixed set of later tickets).

By default everything runs in one process through the library functions the worker, the
store adapter and the retrain Job use. ``--broker`` runs the same loop through the deployed
services instead (:mod:`bench.loop_broker`): a Kafka broker, a ChromaDB server, a
``ticketflow worker`` process that labels each window and applies the agents' answers from
the feedback topic, and ``ticketflow retrain`` run as a process after every window, whose
promotions the worker hot-reloads. Same scenario, split, agents and report; results under
``<scenario>-broker``.

Scenarios:
  new-queue  endava-it; A lacks ``Administrative rights`` (~4% of B); target: its F1 on C
             >= 0.6 after <= 300 answers.
  steady     endava-it; A has every class; target: no promoted model worse than the
             champion it replaced on the next window.
  shift      bueck-v3; A English only, B and C every language; target: macro-F1 on later
             windows +5 points within 500 answers.

The transformer's vectors go through the on-disk embedding cache
(:mod:`ticketflow.batch.embedding_cache`): every text is embedded once and reused by every
order. Run (encoders from MODEL_REGISTRY_DIR):

    python -m bench.loop --scenario new-queue --orders oldest,margin,margin-diverse
    python -m bench.loop --scenario new-queue --orders margin-diverse --reassign 0.5 --broker
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.metrics import f1_score

from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.batch import configured
from ticketflow.batch.backfill import BackfillRequest, backfill
from ticketflow.batch.embedding_cache import CachedEncoder
from ticketflow.batch.promotion import promote
from ticketflow.batch.retrain import (
    RetrainPolicy,
    RetrainRequest,
    StoredTickets,
    read_store,
    retrain,
    training_label,
)
from ticketflow.batch.train import TrainRequest, train
from ticketflow.config import Settings
from ticketflow.data.datasets import load_labeled
from ticketflow.models.embedding import Encoder
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import ModelConfig
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.review import ReviewPolicy
from ticketflow.review.queue import Order, ReviewQueue
from ticketflow.schemas import LabelFeedback, Ticket
from ticketflow.schemas import store as layout
from ticketflow.stream.feedback import apply_feedback

logger = logging.getLogger(__name__)

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
NEW = "Administrative rights"
TARGET = "queue"
RESULTS = Path(__file__).resolve().parent / "results" / "loop.json"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "learning-loop.png"
# The default recipe with a cheaper cross-validation (train and retrain alike): no choice of
# block weights, out-of-fold predictions from at most 3,000 rows in 3 folds. A fit then takes
# about a minute on the 2-core machine instead of several.
CONFIG = replace(ModelConfig(), cv_folds=3, block_grid=(), cv_max_rows=3_000)
MAX_CHARS = 1_000

Row = dict[str, Any]


@dataclass
class Scenario:
    name: str
    a: list[Row]
    windows: list[list[Row]]
    c: list[Row]
    every: list[Row] | None = None  # A with every label, when A lacks one
    new: str | None = None


def endava(args: argparse.Namespace) -> list[Row]:
    frame = pd.read_csv(DATASETS / "endava-it" / "tickets.csv").sample(
        frac=1.0, random_state=args.split_seed
    )
    return [
        {"ticket_id": f"E-{i}", "body": str(r.Document), TARGET: str(r.Topic_group)}
        for i, r in enumerate(frame.itertuples())
    ]


def split(rows: list[Row], a: int, window: int, windows: int, c: int) -> tuple[Any, ...]:
    b = rows[a : a + window * windows]
    return (
        rows[:a],
        [b[k * window : (k + 1) * window] for k in range(windows)],
        rows[a + window * windows : a + window * windows + c],
    )


def scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario in ("new-queue", "steady"):
        a, windows, c = split(endava(args), args.a, args.window, args.windows, args.c)
        if args.scenario == "steady":
            return Scenario("steady", a, windows, c)
        return Scenario("new-queue", [r for r in a if r[TARGET] != NEW], windows, c, a, NEW)
    frame = pd.read_csv(DATASETS / "bueck-v3" / "tickets.csv")
    rows = [
        {
            "ticket_id": f"B-{i}",
            "subject": r.subject if isinstance(r.subject, str) else "",
            "body": str(r.body),
            TARGET: str(r.queue),
            "language": str(r.language),
        }
        for i, r in enumerate(frame.itertuples())
    ]
    random.Random(7).shuffle(rows)
    english = [r for r in rows if r["language"] == "en"]
    a = english[: args.a]
    chosen = {r["ticket_id"] for r in a}
    rest = [r for r in rows if r["ticket_id"] not in chosen]
    # Again: the English tickets A left are the last of the shuffled ones.
    random.Random(8).shuffle(rest)
    _, windows, c = split([*a, *rest], len(a), args.window, args.windows, args.c)
    return Scenario("shift", a, windows, c)


def write(path: Path, rows: Sequence[Row], *, labels: bool) -> Path:
    keep = ("ticket_id", "subject", "body", *((TARGET,) if labels else ()))
    lines = [json.dumps({k: r[k] for k in keep if k in r}) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def macro(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def class_f1(truth: Sequence[str], predicted: Sequence[str], label: str | None) -> float | None:
    if label is None:
        return None
    return float(f1_score(truth, predicted, labels=[label], average="macro", zero_division=0))


@dataclass
class Models:
    """The encoders and what each registered version predicts for a set of tickets (cached:
    a champion is scored on part C once)."""

    dense: Encoder
    static: Encoder
    registry: ModelRegistry
    predictions: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def pipeline(self, version: str) -> LabelingPipeline:
        classifier = self.registry.load(version).classifier
        return LabelingPipeline(
            self.dense, classifier, max_text_chars=MAX_CHARS, static_encoder=self.static
        )

    def predict(self, version: str, name: str, rows: Sequence[Row]) -> list[str]:
        key = (version, name)
        if key not in self.predictions:
            # What the worker reads of a ticket (as in write(labels=False)).
            fields = ("ticket_id", "subject", "body")
            tickets = [Ticket.model_validate({k: r[k] for k in fields if k in r}) for r in rows]
            result = self.pipeline(version).run(tickets)
            self.predictions[key] = [p[TARGET].label for p in result.predictions]
        return self.predictions[key]

    def score(
        self, version: str, name: str, rows: Sequence[Row], new: str | None
    ) -> dict[str, Any]:
        truth = [r[TARGET] for r in rows]
        predicted = self.predict(version, name, rows)
        return {"macro_f1": macro(truth, predicted), "new_f1": class_f1(truth, predicted, new)}


def fit(models: Models, root: Path, rows: Sequence[Row], name: str, *, current: bool) -> str:
    data = load_labeled(
        write(root / f"{name}.jsonl", rows, labels=True), targets=[TARGET], progress=False
    )
    result = train(
        TrainRequest(data, max_text_chars=MAX_CHARS, config=CONFIG),
        encoder=models.dense,
        static_encoder=models.static,
        registry=models.registry,
        make_current=current,
        progress=False,
    )
    return result.version


@dataclass(frozen=True)
class Variant:
    order: Order
    reassign: float  # share of the wrongly auto-routed tickets agents reassign

    @property
    def name(self) -> str:
        return f"{self.order.value}, reassign {self.reassign:.0%}"


@dataclass(frozen=True)
class Retrained:
    """What a retrain decided: its challenger, decision and reasons; promoted or not."""

    challenger: str
    decision: str
    reasons: list[str]
    promoted: bool


@dataclass
class Loop:
    """One closed loop's bookkeeping, whatever runs it (here in one process; through the
    broker, a worker process and the retrain Job in :mod:`bench.loop_broker`): the window
    rows, the answers and reassignments given, the serving model and the one it replaced."""

    sc: Scenario
    variant: Variant
    models: Models
    serving: str
    budget: int
    seed: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    answers: int = 0
    reassigned: int = 0
    new_answers: int = 0
    previous: str | None = None  # the champion a promotion replaced, scored on the next window
    started: float = field(default_factory=time.perf_counter)
    wrong: list[str] = field(default_factory=list)  # the window's wrongly auto-routed tickets
    new_reassigned: int = 0  # of the window's reassignments, those to the new class

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.truth_of = {r["ticket_id"]: r[TARGET] for w in self.sc.windows for r in w}

    def labelled(
        self, k: int, window: Sequence[Row], served: Sequence[str], held: Sequence[bool]
    ) -> dict[str, Any]:
        """The row of window ``k`` as the serving model labelled it (``served``, ``held``)."""
        truth = [r[TARGET] for r in window]
        auto = [i for i, h in enumerate(held) if not h]
        row: dict[str, Any] = {
            "window": k,
            "model": self.serving,
            "answers_before": self.answers,
            "reassigned_before": self.reassigned,
            "macro_f1": macro(truth, served),
            "new_f1": class_f1(truth, served, self.sc.new),
            "auto_share": len(auto) / len(window),
            "auto_precision": (
                sum(served[i] == truth[i] for i in auto) / len(auto) if auto else None
            ),
        }
        if self.previous is not None:
            before = self.models.score(self.previous, f"w{k}", window, self.sc.new)
            row["replaced_model_macro_f1"] = before["macro_f1"]
            row["regression"] = row["macro_f1"] < before["macro_f1"]
        self.wrong = [window[i]["ticket_id"] for i in auto if served[i] != truth[i]]
        return row

    def feedback(self, store: ChromaVectorStore) -> list[LabelFeedback]:
        """The agents' work on a window: up to ``budget`` answers from the desk's queue (every
        held ticket not yet answered, backlog included), then the reassignments."""
        queue = ReviewQueue(store, lambda: [TARGET])
        page = queue.page(order=self.variant.order, limit=self.budget).items
        truth = self.truth_of
        feedback = [
            LabelFeedback(
                ticket_id=t.ticket_id, labels={TARGET: truth[t.ticket_id]}, corrected_by="agent"
            )
            for t in page
        ]
        self.answers += len(feedback)
        self.new_answers += sum(truth[t.ticket_id] == self.sc.new for t in page)
        moved = [i for i in self.wrong if self.rng.random() < self.variant.reassign]
        feedback += [
            LabelFeedback(ticket_id=i, labels={TARGET: truth[i]}, corrected_by="reassign")
            for i in moved
        ]
        self.reassigned += len(moved)
        self.new_reassigned = sum(truth[i] == self.sc.new for i in moved)
        return feedback

    def training_labels(self, stored: StoredTickets, policy: RetrainPolicy) -> dict[str, int]:
        """How the stream's tickets of the new class are labelled for the next retrain: by a
        person (the class), by a model's confident label, or not at all; of the model's,
        ``wrong`` name another class and ``wrong, by a model without the class`` come from a
        model that never knew it (``retrain`` leaves out those near an answer of the class,
        before and after a promoted model learned it)."""
        if self.sc.new is None:
            return {}
        counts: Counter[str] = Counter()
        knew: dict[str, bool] = {}
        for ticket_id, meta in zip(stored.ids, stored.metadatas, strict=True):
            if self.truth_of.get(ticket_id) != self.sc.new:
                continue
            label = training_label(meta, TARGET, policy)
            if layout.known_label(meta, TARGET) is not None:
                counts["person"] += 1
                continue
            counts["model" if label else "none"] += 1
            if label is not None and label != self.sc.new:
                counts["wrong"] += 1
                version = str(meta.get("model_version"))
                if version not in knew:
                    classes = self.models.registry.metadata(version).labels.get(TARGET, [])
                    knew[version] = self.sc.new in classes
                counts["wrong, by a model without the class"] += not knew[version]
        return dict(counts)

    def decided(self, row: dict[str, Any], retrained: Retrained, *, held: int) -> None:
        """The retrain after the window: its decision, the challenger and the model serving
        from now on scored on C; ``held``: held tickets in the store, not yet answered."""
        promoted = retrained.promoted
        challenger_c = self.models.score(retrained.challenger, "C", self.sc.c, self.sc.new)
        serving_c = self.models.score(self.serving, "C", self.sc.c, self.sc.new)
        self.previous = None
        if promoted:
            self.previous, self.serving = self.serving, retrained.challenger
        row.update(
            {
                "answers": self.answers,
                "new_class_answers": self.new_answers,
                "reassigned": self.reassigned,
                "new_class_reassigned": self.new_reassigned,
                "held_in_store": held,
                "decision": retrained.decision,
                "reasons": retrained.reasons,
                "challenger_on_c": challenger_c,
                "champion_on_c": serving_c,
                "serving_on_c": challenger_c if promoted else serving_c,
            }
        )
        logger.info(
            "%s %s window %d: %s", self.sc.name, self.variant.name, row["window"], json.dumps(row)
        )
        self.rows.append(row)

    def result(self) -> dict[str, Any]:
        if self.previous is not None:  # the last promotion: scored on C against what it replaced
            score = self.models.score
            self.rows[-1]["regression_on_c"] = (
                score(self.serving, "C", self.sc.c, self.sc.new)["macro_f1"]
                < score(self.previous, "C", self.sc.c, self.sc.new)["macro_f1"]
            )
        return {
            "variant": self.variant.name,
            "windows": self.rows,
            "seconds": time.perf_counter() - self.started,
        }


def history(client: Any, loop: Loop, root: Path, collection: str = "tickets") -> ChromaVectorStore:
    """The store the loop starts from: A with its labels, as ``ticketflow backfill`` imports
    a historical file (labelled by the champion for the review fields), in the vector space
    the worker writes (the cascade's static vectors)."""
    models = loop.models
    store = ChromaVectorStore(
        client, collection, embedding_model=models.static.name, dimension=models.static.dimension
    )
    backfill(
        BackfillRequest(write(root / "a.jsonl", loop.sc.a, labels=True)),
        pipeline=models.pipeline(loop.serving),
        store=store,
        model_version=loop.serving,
        progress=False,
    )
    return store


def run_variant(  # noqa: PLR0913
    sc: Scenario,
    variant: Variant,
    models: Models,
    champion: str,
    root: Path,
    *,
    budget: int,
    seed: int,
    policy: RetrainPolicy,
    review: ReviewPolicy,
) -> dict[str, Any]:
    """One closed loop in this process: A backfilled as history, then every window of B
    labelled (``backfill``, held as ``review`` says), answered (``apply_feedback``),
    retrained on (``retrain``)."""
    loop = Loop(sc, variant, models, champion, budget, seed)
    models.registry.promote(champion, by="bench", reason=f"{variant.name}: start")
    store = history(open_chroma_client(host=None, port=0, path=root / "chroma"), loop, root)
    for k, window in enumerate(sc.windows):
        backfill(
            BackfillRequest(write(root / f"w{k}.jsonl", window, labels=False)),
            pipeline=models.pipeline(loop.serving),
            store=store,
            model_version=loop.serving,
            review=review,
            progress=False,
        )
        records = store.records([r["ticket_id"] for r in window])
        served = [str(records[r["ticket_id"]].metadata[TARGET]) for r in window]
        held = [bool(records[r["ticket_id"]].metadata.get("needs_review")) for r in window]
        row = loop.labelled(k, window, served, held)
        apply_feedback(store.collection, loop.feedback(store))
        stored = read_store(store.collection)
        row["new_class_training_labels"] = loop.training_labels(stored, policy)
        result = retrain(
            stored,
            RetrainRequest(config=CONFIG),
            registry=models.registry,
            policy=policy,
            dense_encoder=models.dense,
        )
        if result.promote:
            promote(models.registry, result.challenger, by="bench", reason="retrain", announce=None)
        retrained = Retrained(result.challenger, result.decision, result.reasons, result.promote)
        loop.decided(row, retrained, held=len(store.held_ids()))
    return loop.result()


def plot(results: dict[str, Any], path: Path) -> None:
    """Learning curves, a panel per scenario and what it is judged on: the serving model's
    macro-F1 on each window it labels (solid) and every challenger's score on part C
    (dashed), against the answers given before; for the new queue, its class's F1 on C."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("new-queue", "new_f1", "F1 of the new class on C (challenger)"),
        ("new-queue", "macro_f1", "macro-F1"),
        ("shift", "macro_f1", "macro-F1"),
        ("steady", "macro_f1", "macro-F1"),
    ]
    # The scenarios that were run only (the broker mode's figure has the new queue alone).
    ran = {report.get("scenario") for report in results.values()}
    panels = [panel for panel in panels if panel[0] in ran]
    rows = (len(panels) + 1) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(12, 4.25 * rows), squeeze=False)
    for axis, (scenario, metric, ylabel) in zip(axes.flat, panels, strict=False):
        for key, report in results.items():
            if report.get("scenario") != scenario:
                continue
            for variant in report["variants"]:
                rows = variant["windows"]
                if not rows:
                    continue
                label = variant["variant"] if key == scenario else f"{key}: {variant['variant']}"
                after = [r["answers"] for r in rows]
                on_c = [r["challenger_on_c"][metric] for r in rows]
                if metric == "new_f1":
                    axis.plot([0, *after], [0.0, *on_c], marker="o", label=label)
                    continue
                line = axis.plot(
                    [r["answers_before"] for r in rows],
                    [r["macro_f1"] for r in rows],
                    marker="o",
                    label=f"{label} (serving, window)",
                )
                axis.plot(after, on_c, linestyle="--", marker="x", color=line[0].get_color())
        if metric == "new_f1":
            axis.axhline(0.6, color="grey", linestyle=":", linewidth=1)
        axis.set_title(f"{scenario}: {ylabel}")
        axis.set_xlabel("answers to held tickets (reassignments not counted)")
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=6)
    figure.suptitle("solid: serving model on the window it labels; dashed: challenger on C")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=["new-queue", "steady", "shift"], default="new-queue")
    parser.add_argument("--a", type=int, default=6000)
    parser.add_argument("--window", type=int, default=750)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--c", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=75, help="answers per window")
    parser.add_argument("--orders", default="oldest,margin,margin-diverse")
    parser.add_argument("--reassign", default="0", help="shares, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=7, help="the agents' reassignments")
    parser.add_argument(
        "--split-seed", type=int, default=7, help="the endava shuffle that makes A, B and C"
    )
    parser.add_argument(
        "--min-class-support",
        type=int,
        default=RetrainPolicy().min_class_support,
        help="RETRAIN_MIN_CLASS_SUPPORT (default: the setting's default)",
    )
    parser.add_argument(
        "--no-use-predicted",
        action="store_true",
        help="RETRAIN_USE_PREDICTED=false: retrain on people's and imported labels only",
    )
    parser.add_argument(
        "--min-probability",
        type=float,
        default=RetrainPolicy().min_probability,
        help="RETRAIN_MIN_PROBABILITY: model labels below it are not trained on",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=RetrainPolicy().confidence,
        help="RETRAIN_CONFIDENCE: share of bootstrap resamples with a gain (0: margin only)",
    )
    parser.add_argument(
        "--audit-share",
        type=float,
        default=0.0,
        help="REVIEW_AUDIT_SHARE: confident tickets held all the same for an audit (in process)",
    )
    parser.add_argument(
        "--broker",
        action="store_true",
        help="through a Kafka broker, a ChromaDB server, a worker process and the retrain "
        "command (bench.loop_broker) instead of in this process",
    )
    parser.add_argument(
        "--key", help="the run's name in --out (default: the scenario, + '-broker' with --broker)"
    )
    parser.add_argument("--plot", type=Path, default=PLOT, help="learning curves (PNG)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from --out")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text()), args.plot)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("ticketflow.batch.backfill", "ticketflow.batch.train", "httpx", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sc = scenario(args)
    root = Path(tempfile.mkdtemp(prefix=f"loop-{sc.name}-"))
    # The encoders next to the models, as `ticketflow train` leaves them: a worker process
    # serving this registry finds them there.
    settings = Settings(model_registry_dir=root / "registry")
    dense = CachedEncoder(configured.encoder(settings))
    static = configured.static_encoder(settings)
    models = Models(dense, static, ModelRegistry(settings.model_registry_dir))
    started = time.perf_counter()
    champion = fit(models, root, sc.a, "a", current=True)
    every = fit(models, root, sc.every, "every", current=False) if sc.every else None
    train_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "scenario": sc.name,
        "through": "broker, worker process, retrain command" if args.broker else "one process",
        "sizes": {"a": len(sc.a), "window": args.window, "windows": args.windows, "c": len(sc.c)},
        "budget_per_window": args.budget,
        "min_class_support": args.min_class_support,
        "use_predicted": not args.no_use_predicted,
        "min_probability": args.min_probability,
        "confidence": args.confidence,
        "audit_share": args.audit_share,
        "split_seed": args.split_seed,
        "new_class": sc.new,
        "new_class_share_b": (
            sum(r[TARGET] == sc.new for w in sc.windows for r in w) / sum(map(len, sc.windows))
            if sc.new
            else None
        ),
        "encoders": {
            "dense": f"{dense.name} ({settings.embedding_backend}, "
            f"{settings.embedding_max_tokens} tokens)",
            "static": static.name,
        },
        "train_seconds": train_s,
        "champion_on_c": models.score(champion, "C", sc.c, sc.new),
        "every_label_on_c": models.score(every, "C", sc.c, sc.new) if every else None,
        "variants": [],
    }
    run: Callable[..., dict[str, Any]]
    if args.broker:
        from bench.loop_broker import run_broker_variant

        # Stopped with SIGTERM, the broker, ChromaDB server and worker it started stop too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

        run = partial(run_broker_variant, min_class_support=args.min_class_support)
    else:
        policy = RetrainPolicy(
            min_class_support=args.min_class_support,
            use_predicted=not args.no_use_predicted,
            min_probability=args.min_probability,
            confidence=args.confidence,
        )
        run = partial(run_variant, policy=policy, review=ReviewPolicy(audit_share=args.audit_share))
    for order in [Order(o) for o in args.orders.split(",")]:
        for share in [float(s) for s in args.reassign.split(",")]:
            variant = Variant(order, share)
            folder = root / f"{order.value}-{share:g}"
            report["variants"].append(
                run(sc, variant, models, champion, folder, budget=args.budget, seed=args.seed)
            )
            shutil.rmtree(folder / "chroma", ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out[args.key or sc.name + ("-broker" if args.broker else "")] = report
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    plot(out, args.plot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
