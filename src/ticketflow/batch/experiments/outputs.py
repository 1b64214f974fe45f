"""What the comparisons write: the results as markdown and JSON, and the plots of the
candidate comparison (reliability, confusion, coverage–precision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ticketflow.batch.evaluate import ROUTE_PRECISIONS
from ticketflow.batch.experiments.candidates import DEFAULT_MODEL
from ticketflow.batch.experiments.protocol import MIN_CLASS_ROWS, REVIEW_PRECISION
from ticketflow.batch.experiments.scoring import HeldOut

logger = logging.getLogger(__name__)


def write_plots(
    predictions: Mapping[tuple[str, str], Mapping[str, HeldOut]],
    winner: str,
    out_dir: Path,
) -> dict[str, dict[str, str]]:
    """Per task and target: the winner's reliability diagram and confusion matrix (test
    part) and the coverage–precision curve of every candidate; paths relative to
    ``out_dir``."""
    from ticketflow.batch.evaluate import (
        plot_confusion,
        plot_coverage_precision,
        plot_reliability,
    )

    written: dict[str, dict[str, str]] = {}
    for (task, target), by_candidate in predictions.items():
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{task}-{target}")
        title = f"{task} / {target}"
        paths = {
            "reliability": Path("plots") / f"{slug}-reliability.png",
            "coverage_precision": Path("plots") / f"{slug}-coverage-precision.png",
            "confusion": Path("plots") / f"{slug}-confusion.png",
        }
        best = by_candidate.get(winner)
        if best is not None:
            plot_reliability(
                best.confidence, best.correct, out_dir / paths["reliability"], f"{title}: {winner}"
            )
            labels = best.classes + sorted(set(best.truth) - set(best.classes))
            plot_confusion(best.truth, best.predicted, labels, out_dir / paths["confusion"], title)
        else:
            del paths["reliability"], paths["confusion"]
        plot_coverage_precision(
            {name: (p.confidence, p.correct) for name, p in by_candidate.items()},
            out_dir / paths["coverage_precision"],
            title,
            precision=REVIEW_PRECISION,
        )
        written[title] = {kind: path.as_posix() for kind, path in paths.items()}
    return written


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def markdown(report: Mapping[str, Any]) -> str:
    """The results as markdown: one table per task and target, then details."""
    lines = [
        "# Experiment results",
        "",
        f"Created {report['created_at']}, encoder `{report['encoder']}`, "
        f"{report['machine']['cpus']} CPUs, {report['seconds'] / 60:.1f} min.",
        "",
        f"- split: {report['split']}",
        f"- model selection: {report['cv']}; {report['selection']}",
        f"- review cut: chosen on out-of-fold predictions for precision "
        f"≥ {report['review_precision']:.2f}, applied to the test part",
    ]
    for name, p in report["protocol"].items():
        lines.append(
            f"- {name}: {p['rows_used']} of {p['rows_in_file']} rows ({p['subsample']}), "
            f"train {p['train']}, test {p['test']}"
        )
        dropped = p.get("dropped_classes")
        if dropped:
            for target, classes in dropped["classes"].items():
                lines.append(
                    f"  - left out, fewer than {dropped['min_rows']} rows of {target}: "
                    + ", ".join(classes)
                )
    lines += ["", f"**Winner (by CV): {report['winner']}**", ""]
    levels = [f"{p:.2f}" for p in ROUTE_PRECISIONS]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in report["results"]:
        groups.setdefault((row["task"], row["target"]), []).append(row)
    for (task, target), rows in groups.items():
        lines += [
            f"## {task} / {target}",
            "",
            "| candidate | CV macro-F1 | CV acc | test macro-F1 | test acc | test ECE | "
            + " | ".join(f"cover@P≥{lv}" for lv in levels)
            + " | review cut (CV) → test cover / prec | fit s | ms/ticket |",
            "|---|---|---|---|---|---|" + "---|" * len(levels) + "---|---|---|",
        ]
        for row in rows:
            cv, test = row["cv"], row["test"]
            cut = test["review_cut"]
            precision = cut["test_precision"]
            lines.append(
                f"| {row['candidate']}{' (' + row['notes'] + ')' if row['notes'] else ''} "
                f"| {_pm(cv['macro_f1_mean'], cv['macro_f1_std'])} "
                f"| {_pm(cv['accuracy_mean'], cv['accuracy_std'])} "
                f"| {test['macro_f1']:.3f} | {test['accuracy']:.3f} | {test['ece']:.3f} | "
                + " | ".join(f"{test['auto_route'][lv]['coverage']:.0%}" for lv in levels)
                + f" | {cut['threshold']:.2f} → {cut['test_coverage']:.0%} / "
                + (f"{precision:.2f}" if precision is not None else "–")
                + f" | {row['fit_seconds']:.1f} | {row['predict_ms_per_ticket']:.2f} |"
            )
        lines.append("")
        plots = report.get("plots", {}).get(f"{task} / {target}", {})
        for kind, caption in (
            ("reliability", "reliability diagram of the winner (test)"),
            ("coverage_precision", "coverage at each precision, every candidate (test)"),
            ("confusion", "confusion matrix of the winner (test)"),
        ):
            if kind in plots:
                lines.append(f"![{task} / {target}: {caption}]({plots[kind]})")
        if plots:
            lines.append("")
    lines += _details(report)
    return "\n".join(lines) + "\n"


def _details(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    winner = report["winner"]
    rows = [r for r in report["results"] if r["candidate"] == winner]
    if not rows:
        return lines
    lines += [f"## Details of the winner: {winner}", ""]
    for row in rows:
        test = row["test"]
        lines.append(f"### {row['task']} / {row['target']}: per-class F1 (test)")
        lines.append("")
        lines.append("| class | F1 | support |")
        lines.append("|---|---|---|")
        for label, m in test["per_class"].items():
            lines.append(f"| {label} | {m['f1-score']:.3f} | {int(m['support'])} |")
        lines.append("")
        if "per_language_macro_f1" in test:
            langs = test["per_language_macro_f1"]
            lines.append("| language | " + " | ".join(langs) + " |")
            lines.append("|---|" + "---|" * len(langs))
            lines.append(
                "| macro-F1 (n) | "
                + " | ".join(f"{v:.3f} ({test['per_language_n'][k]})" for k, v in langs.items())
                + " |"
            )
            lines.append("")
    cost = report.get("inference_cost")
    if cost:
        lines += [
            "## Inference cost (worker-sized batches)",
            "",
            f"{cost['model']} on {cost['task']}: encoder {cost['embed_ms_per_ticket']:.1f} "
            f"ms/ticket, classifier (features + heads) {cost['classify_ms_per_ticket']:.2f} "
            f"ms/ticket = {cost['classify_share_of_embed']:.1%} of the encoder, batches of "
            f"{int(cost['batch'])}, {int(cost['tickets'])} tickets.",
            "",
        ]
    return lines


def write_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    md_path = out_dir / "results.md"
    json_path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    logger.info("wrote %s and %s", json_path, md_path)
    return json_path, md_path


def encoders_markdown(report: Mapping[str, Any]) -> str:
    """One table: speed of each encoder, then per target the test macro-F1 (CV in the JSON)
    of the encoder's vector alone and of the default model."""
    results = report["results"]
    targets = report["targets"]
    lines = [
        "# Encoder comparison",
        "",
        f"Created {report['created_at']}, {report['task']}: {report['rows_used']} of "
        f"{report['rows_in_file']} rows (stratified on {targets[0]}), train "
        f"{report['train']}, test {report['test']}; {report['machine']['cpus']} CPUs, "
        f"{report['seconds'] / 60:.1f} min. tickets/s: one pass over all "
        f"{report['rows_used']} texts after a 16-text warm-up.",
        "",
    ]
    for target, classes in report.get("dropped_classes", {}).items():
        lines += [
            f"Left out, fewer than {MIN_CLASS_ROWS} rows of {target}: {', '.join(classes)}.",
            "",
        ]
    header = ["encoder", "dim", "load s", "tickets/s"]
    for target in targets:
        header += [f"{target}: embedding + LR test F1", f"{target}: default model test F1"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results:
        cells = [
            f"{row['encoder']} ({row['description']})",
            str(row["dimension"]),
            f"{row['load_seconds']:.1f}",
            f"{row['tickets_per_second']:.1f}",
        ]
        for target in targets:
            scores = row["targets"].get(target, {})
            for name in ("embedding + LR C=10", f"{DEFAULT_MODEL} + temperature"):
                found = scores.get(name)
                cells.append(
                    f"{found['test_macro_f1']:.3f} (CV {found['cv_macro_f1_mean']:.3f})"
                    if found
                    else "–"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "encoders_markdown",
    "markdown",
    "write_plots",
    "write_report",
]
