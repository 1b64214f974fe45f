"""Evaluation: accuracy, macro-F1, per-class report, confusion matrices and what the review
cuts let through (per target and for the review gate)."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from ticketflow.models.cascade import predict_cascade
from ticketflow.models.classifier import Prediction, TicketClassifier, threshold_for_precision
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.registry import GateRouting, ReviewRouting, Routing, TargetRouting
from ticketflow.models.review import DEFAULT_REVIEW_PRECISION, ReviewCuts

logger = logging.getLogger(__name__)

ROUTE_PRECISIONS = (0.80, 0.90, 0.95)


def expected_calibration_error(
    confidence: Sequence[float] | npt.NDArray[np.float64],
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    bins: int = 15,
) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width bins.

    Weighted by the share of predictions in each bin; 15 bins as in Guo et al. (2017).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if len(conf) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - ok[mask].mean())
    return float(total)


def confidence_metrics(
    confidence: Sequence[float] | npt.NDArray[np.float64],
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    precisions: Sequence[float] = ROUTE_PRECISIONS,
) -> dict[str, Any]:
    """ECE and the auto-route curve: coverage (and cut) at each precision level."""
    route = {}
    for precision in precisions:
        threshold, coverage = threshold_for_precision(confidence, correct, precision)
        route[f"{precision:.2f}"] = {"threshold": min(threshold, 1.0), "coverage": coverage}
    return {"ece": expected_calibration_error(confidence, correct), "auto_route": route}


def target_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    report = classification_report(
        y_true, y_pred, labels=list(labels), output_dict=True, zero_division=0
    )
    per_class = {
        label: {k: float(v) for k, v in report[label].items()}
        for label in labels
        if label in report
    }
    # Macro-F1 over the classes the rows have: a class with no row here has no recall to
    # measure, and scoring it 0 would drag the mean down for nothing the model did.
    present = [label for label in labels if label in set(y_true)]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        )
        if present
        else 0.0,
        "n": len(y_true),
        "per_class": per_class,
        "absent": [label for label in labels if label not in set(y_true)],
    }


def bootstrap_gains(
    y_true: Sequence[str],
    before: Sequence[str],
    after: Sequence[str],
    *,
    resamples: int = 2_000,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """Macro-F1 of ``after`` minus that of ``before`` on ``resamples`` paired bootstrap
    resamples of the rows (the same rows for both, so what they agree on cancels out).

    Macro-F1 as :func:`target_metrics` computes it: over the classes the resample's true
    labels have. Vectorised as one multinomial draw of row counts per resample and one
    matrix product per count (true positives, false positives, false negatives per class).
    """
    n = len(y_true)
    if not n == len(before) == len(after):
        raise ValueError(f"{n} true labels, {len(before)} and {len(after)} predictions")
    if n == 0:
        return np.zeros(resamples)
    classes = sorted({*y_true, *before, *after})
    index = {label: i for i, label in enumerate(classes)}
    truth = np.zeros((n, len(classes)))
    truth[np.arange(n), [index[y] for y in y_true]] = 1.0
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
    support = weights @ truth
    present = support > 0
    scores = []
    for predicted in (before, after):
        guess = np.zeros((n, len(classes)))
        guess[np.arange(n), [index[y] for y in predicted]] = 1.0
        tp = weights @ (truth * guess)
        fp = weights @ ((1.0 - truth) * guess)
        denominator = 2 * tp + fp + (support - tp)
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        scores.append((f1 * present).sum(axis=1) / present.sum(axis=1))
    gains: npt.NDArray[np.float64] = scores[1] - scores[0]
    return gains


def evaluate_classifier(
    classifier: TicketClassifier,
    vectors: FloatMatrix,
    labels: Mapping[str, Sequence[str]],
    *,
    texts: Sequence[str] | None = None,
    figure_dir: Path | None = None,
    static_vectors: FloatMatrix | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per target; with ``figure_dir`` also a confusion-matrix PNG per target.

    A cascade model is scored as it serves when ``static_vectors`` (the first stage's input,
    same rows) are given; without them, its transformer stage alone.
    """
    predictions = predict_rows(classifier, vectors, texts, static_vectors)
    return evaluate_predictions(classifier, predictions, labels, figure_dir=figure_dir)


def evaluate_predictions(
    classifier: TicketClassifier,
    predictions: Sequence[Mapping[str, Prediction]],
    labels: Mapping[str, Sequence[str]],
    *,
    figure_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_classifier` of predictions already made (rows aligned with ``labels``)."""
    metrics: dict[str, dict[str, Any]] = {}
    for target in classifier.targets:
        if target not in labels:
            continue
        y_true = [str(y) for y in labels[target]]
        y_pred = [p[target].label for p in predictions]
        known = classifier.labels(target)
        all_labels = known + sorted(set(y_true) - set(known))
        metrics[target] = target_metrics(y_true, y_pred, all_labels)
        metrics[target]["confusion"] = confusion_counts(y_true, y_pred, all_labels)
        metrics[target].update(
            confidence_metrics(
                [p[target].probability for p in predictions],
                [t == p for t, p in zip(y_true, y_pred, strict=True)],
            )
        )
        if figure_dir is not None:
            plot_confusion(
                y_true, y_pred, all_labels, figure_dir / f"confusion-{target}.png", target
            )
    return metrics


def majority_baseline(
    train_labels: Sequence[str], test_labels: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy and macro-F1 on ``test_labels`` of always predicting the most frequent of
    ``train_labels``: the floor a model must clear."""
    majority = Counter(str(y) for y in train_labels).most_common(1)[0][0]
    y_true = [str(y) for y in test_labels]
    known = list(labels) + sorted(set(y_true) - set(labels))
    scores = target_metrics(y_true, [majority] * len(y_true), known)
    return {"label": majority, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}


def confusion_counts(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Counts of (true, predicted) label pairs: ``matrix[i][j]`` tickets of ``labels[i]``
    predicted as ``labels[j]``; a prediction outside ``labels`` is added as a column so that
    the counts add up to the rows."""
    columns = list(labels) + sorted(set(y_pred) - set(labels))
    matrix = confusion_matrix(y_true, y_pred, labels=columns)
    return {"labels": columns, "matrix": [[int(v) for v in row] for row in matrix]}


def format_confusion(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Compact text confusion matrix per target: rows true, columns predicted, labels
    numbered so wide label names do not widen the table."""
    lines: list[str] = []
    for target, m in metrics.items():
        if "confusion" not in m:
            continue
        labels, matrix = m["confusion"]["labels"], m["confusion"]["matrix"]
        width = max(4, *(len(str(v)) + 1 for row in matrix for v in row))
        lines.append(f"== {target}: confusion (rows true, columns predicted)")
        header = "".join(f"{f'[{j}]':>{width}}" for j in range(len(labels)))
        lines.append(f"   {'':<4} {'':<28}{header}")
        for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
            cells = "".join(f"{v:>{width}}" for v in row)
            lines.append(f"   {f'[{i}]':<4} {label[:28]:<28}{cells}")
    return "\n".join(lines)


def at_cuts(
    predictions: Sequence[Mapping[str, Prediction]],
    labels: Mapping[str, Sequence[str]],
    cuts: ReviewCuts,
) -> dict[str, TargetRouting]:
    """Per target: its cut and what it lets through on these rows (coverage, precision):
    :func:`routing` of one target, as training reports it on the test part."""
    rows = scored(predictions, labels)
    return {
        t: TargetRouting(
            threshold=cuts.thresholds[t],
            precision_goal=None,
            test=routing(rows, cuts.thresholds, [t]),
        )
        for t in rows
        if t in cuts.thresholds
    }


def format_cuts(routed: Mapping[str, TargetRouting]) -> str:
    """One line per target: the model's stored cut and what it lets through."""
    lines = ["== at the model's review cuts (coverage: share at or above the cut)"]
    for target, r in routed.items():
        lines.append(f"   {target:<16} cut {min(r.threshold, 1.0):.3f}  {_routing_text(r.test)}")
    return "\n".join(lines)


def prediction_records(
    ticket_ids: Sequence[str],
    predictions: Sequence[Mapping[str, Prediction]],
    labels: Mapping[str, Sequence[str]],
    cuts: ReviewCuts,
) -> list[dict[str, Any]]:
    """One flat record per ticket: its id and, per target, truth, prediction, probability
    and needs_review (below the target's cut, as the worker flags it)."""
    records: list[dict[str, Any]] = []
    for i, (ticket_id, predicted) in enumerate(zip(ticket_ids, predictions, strict=True)):
        record: dict[str, Any] = {"ticket_id": ticket_id}
        flags = cuts.flags(predicted)
        for target, p in predicted.items():
            record[f"{target}_truth"] = str(labels[target][i]) if target in labels else None
            record[f"{target}_prediction"] = p.label
            record[f"{target}_probability"] = float(p.probability)
            record[f"{target}_needs_review"] = flags[target]
        records.append(record)
    return records


def write_predictions(path: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """``records`` as JSON lines when ``path`` ends in .jsonl, else as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".jsonl":
            for record in records:
                handle.write(json.dumps(record) + "\n")
        else:
            columns = list(records[0]) if records else ["ticket_id"]
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(records)
    return path


def predict_rows(
    classifier: TicketClassifier,
    vectors: FloatMatrix,
    texts: Sequence[str] | None,
    static_vectors: FloatMatrix | None = None,
) -> list[dict[str, Prediction]]:
    """The model's predictions; through the cascade when it has one and ``static_vectors``."""
    if classifier.first_stage is None or static_vectors is None or texts is None:
        return classifier.predict(vectors, texts)
    outcome = predict_cascade(
        classifier.first_stage,
        classifier,
        classifier.escalation_thresholds,
        texts=texts,
        static_vectors=static_vectors,
        dense_vectors=lambda rows: vectors[rows],
    )
    return outcome.predictions


Scored = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]  # confidence, correct per row


def scored(
    predictions: Sequence[Mapping[str, Prediction]], labels: Mapping[str, Sequence[str]]
) -> dict[str, Scored]:
    """Per target in both: the probability of each row's predicted label and whether it was
    right."""
    targets = [t for t in labels if predictions and t in predictions[0]]
    return {
        t: (
            np.asarray([p[t].probability for p in predictions], dtype=np.float64),
            np.asarray(
                [p[t].label == str(y) for p, y in zip(predictions, labels[t], strict=True)],
                dtype=np.bool_,
            ),
        )
        for t in targets
    }


def routing(
    rows: Mapping[str, Scored], thresholds: Mapping[str, float], targets: Sequence[str]
) -> Routing | None:
    """Tickets routed by ``targets``: each of them at or above its cut (the worker's review
    rule); precision = the share of those whose labels of ``targets`` were all right. None
    when a target is not in ``rows``."""
    if not targets or any(t not in rows for t in targets):
        return None
    n = len(rows[targets[0]][0])
    routed = np.ones(n, dtype=np.bool_)
    right = np.ones(n, dtype=np.bool_)
    for target in targets:
        confidence, correct = rows[target]
        routed &= confidence >= thresholds[target]
        right &= correct
    count = int(routed.sum())
    return Routing(
        coverage=count / n if n else 0.0,
        precision=float(right[routed].mean()) if count else None,
        n=n,
    )


def review_routing(
    *,
    cuts: ReviewCuts,
    precision_goals: Mapping[str, float | None],
    out_of_fold: Mapping[str, Scored],
    test: Mapping[str, Scored],
) -> ReviewRouting:
    """What the review cuts let through, per target, for the gate and for all targets:
    coverage and precision on out-of-fold predictions (the rows the cuts were chosen on, so
    their precision is the goal by construction) and on the test part (the honest number)."""
    thresholds, gate = cuts.thresholds, list(cuts.gate)
    targets = list(thresholds)
    return ReviewRouting(
        targets={
            t: TargetRouting(
                threshold=thresholds[t],
                precision_goal=precision_goals.get(t),
                out_of_fold=routing(out_of_fold, thresholds, [t]),
                test=routing(test, thresholds, [t]),
            )
            for t in targets
        },
        gate=GateRouting(
            targets=list(gate),
            out_of_fold=routing(out_of_fold, thresholds, gate),
            test=routing(test, thresholds, gate),
        ),
        all_targets=(
            None
            if list(gate) == targets
            else GateRouting(
                targets=targets,
                out_of_fold=routing(out_of_fold, thresholds, targets),
                test=routing(test, thresholds, targets),
            )
        ),
    )


def _routing_text(routing: Routing | None) -> str:
    if routing is None:
        return "n/a"
    precision = "-" if routing.precision is None else f"{routing.precision:.3f}"
    return f"{routing.coverage:6.1%} routed, precision {precision}"


def format_review(review: ReviewRouting) -> str:
    """Plain-text review report: what each cut, the gate and all targets together let
    through, out-of-fold and on the test part."""
    lines = ["== review: tickets routed without a person at the review cuts"]
    width = max(len(t) for t in [*review.targets, "gate", "all targets"]) + 2
    for target, r in review.targets.items():
        goal = "fallback" if r.precision_goal is None else f"precision {r.precision_goal:.2f}"
        cut = f"cut {min(r.threshold, 1.0):.3f} ({goal})"
        if r.threshold > 1.0:
            cut = f"no cut reaches {goal}: all reviewed"
        lines.append(
            f"   {target:<{width}} {cut:<32} out-of-fold {_routing_text(r.out_of_fold)}"
            f" | test {_routing_text(r.test)}"
        )
    groups = [("gate", review.gate)]
    if review.all_targets is not None:
        groups.append(("all targets", review.all_targets))
    for name, group in groups:
        which = f"[{', '.join(group.targets)}]"
        lines.append(
            f"   {name:<{width}} {which:<32} out-of-fold {_routing_text(group.out_of_fold)}"
            f" | test {_routing_text(group.test)}"
        )
    lines.append(
        "   (needs_review of a ticket = a gate target below its cut; every target is "
        "flagged on its own)"
    )
    return "\n".join(lines)


def plot_confusion(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], path: Path, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, labels=list(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    size = max(5.0, 0.6 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion (row-normalised, counts in cells)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                colour = "white" if normalised[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_report(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain-text report: headline numbers and per-class precision/recall/F1 per target."""
    lines: list[str] = []
    for target, m in metrics.items():
        lines.append(
            f"== {target}: accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  (n={m['n']})"
        )
        if "ece" in m:
            route = "  ".join(
                f"p≥{level}: {r['coverage']:.0%} (cut {r['threshold']:.2f})"
                for level, r in m["auto_route"].items()
            )
            lines.append(f"   ECE {m['ece']:.3f}  auto-route coverage {route}")
        if "baseline" in m:
            b = m["baseline"]
            lines.append(
                f"   baseline (always {b['label'][:24]!r}): accuracy {b['accuracy']:.3f}  "
                f"macro-F1 {b['macro_f1']:.3f}"
            )
        if m.get("absent"):
            lines.append(f"   not in the test part, left out of macro-F1: {', '.join(m['absent'])}")
        lines.append(f"   {'class':<32} {'prec':>6} {'recall':>6} {'f1':>6} {'support':>8}")
        absent = set(m.get("absent", ()))
        for label, row in m["per_class"].items():
            if label in absent:
                continue
            lines.append(
                f"   {label[:32]:<32} {row['precision']:6.3f} {row['recall']:6.3f} "
                f"{row['f1-score']:6.3f} {int(row['support']):8d}"
            )
    return "\n".join(lines)


def reliability_bins(
    confidence: Sequence[float] | npt.NDArray[np.float64],
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    bins: int = 15,
) -> list[tuple[float, float, float, int]]:
    """Per non-empty equal-width bin (as :func:`expected_calibration_error` bins): (left
    edge, mean confidence, accuracy, count)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    return [
        (
            float(edges[b]),
            float(conf[which == b].mean()),
            float(ok[which == b].mean()),
            int((which == b).sum()),
        )
        for b in range(bins)
        if (which == b).any()
    ]


def plot_reliability(
    confidence: Sequence[float] | npt.NDArray[np.float64],
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    path: Path,
    title: str,
    *,
    bins: int = 15,
) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin (the diagonal is
    perfect calibration), with the ECE and the tickets per bin underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = reliability_bins(confidence, correct, bins=bins)
    width = 1.0 / bins
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.bar(
        [r[0] for r in rows],
        [r[2] for r in rows],
        width=width,
        align="edge",
        edgecolor="#1f3b73",
        color="#4c72b0",
        alpha=0.8,
        label="accuracy",
    )
    top.plot(
        [r[1] for r in rows],
        [r[2] for r in rows],
        "o",
        color="#c44e52",
        markersize=4,
        label="mean confidence",
    )
    ece = expected_calibration_error(confidence, correct, bins=bins)
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{title}\nECE {ece:.3f} ({len(np.asarray(confidence))} tickets)", fontsize=9)
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(
        [r[0] for r in rows], [r[3] for r in rows], width=width, align="edge", color="#8c8c8c"
    )
    bottom.set_xlabel("confidence (probability of the predicted label)")
    bottom.set_ylabel("tickets")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def coverage_precision_curve(
    confidence: Sequence[float] | npt.NDArray[np.float64],
    correct: Sequence[bool] | npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(coverage, precision) when the most confident tickets are routed first: point k is
    the top k tickets (ties broken by order)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if not len(conf):
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-conf, kind="stable")
    counts = np.arange(1, len(conf) + 1)
    return counts / len(conf), np.cumsum(ok[order]) / counts


def plot_coverage_precision(
    curves: Mapping[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]],
    path: Path,
    title: str,
    *,
    precision: float = DEFAULT_REVIEW_PRECISION,
) -> Path:
    """Coverage–precision curves (one per model) with the precision goal as a line: where a
    curve crosses it is the share of tickets routed without a person at that precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (confidence, correct) in curves.items():
        coverage, precisions = coverage_precision_curve(confidence, correct)
        ax.plot(coverage, precisions, linewidth=1.3, label=name[:45])
    ax.axhline(
        precision, color="#c44e52", linestyle="--", linewidth=1, label=f"precision {precision:.2f}"
    )
    ax.set_xlabel("coverage (share of tickets routed, most confident first)")
    ax.set_ylabel("precision of the routed tickets")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}: coverage at precision (test)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
