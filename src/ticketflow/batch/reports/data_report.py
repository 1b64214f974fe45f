"""``ticketflow report data``: the profile of a labelled file as one page, section by section
(overview, class balance, text length, languages, tags, missing fields, duplicates, label
co-occurrence, telling terms). The numbers come from :mod:`.profiling`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketflow.batch.reports.page import Figure, Page, Section, Table, shorten
from ticketflow.batch.reports.plots import bar_figure, heatmap_figure, histogram_figure
from ticketflow.batch.reports.profiling import (
    MISSING,
    NEAR_DUPLICATE_QUERIES,
    SEED,
    TERMS_MAX_ROWS,
    UNKNOWN,
    Profiled,
    class_balance,
    cooccurrence,
    exact_duplicates,
    find_tokenizer,
    guess_language,
    length_summary,
    missing_fields,
    near_duplicates,
    tag_summary,
    telling_terms,
    token_lengths,
)
from ticketflow.models.text import build_text
from ticketflow.schemas import Ticket

logger = logging.getLogger(__name__)

MAX_CLASSES_PLOTTED = 40


@dataclass(frozen=True)
class DataReportOptions:
    max_text_chars: int = 1_000  # MAX_TEXT_CHARS: where training cuts the model text
    model_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    export_root: Path | None = None  # MODEL_REGISTRY_DIR/encoders
    max_tokens: int | None = None  # EMBEDDING_MAX_TOKENS
    near_duplicate_queries: int = NEAR_DUPLICATE_QUERIES
    terms_max_rows: int = TERMS_MAX_ROWS
    seed: int = SEED


def build_data_report(profiled: Profiled, options: DataReportOptions) -> Page:
    """Every section of the data report; the numbers also go to ``Page.summary``."""
    started = time.perf_counter()
    valid = profiled.valid_rows
    tickets = [t for t in profiled.tickets if t is not None]
    full_texts = [build_text(t, max_chars=10**9) for t in tickets]
    model_texts = [build_text(t, max_chars=options.max_text_chars) for t in tickets]
    labels_valid = {t: [v[i] for i in valid] for t, v in profiled.labels.items()}
    summary: dict[str, Any] = {
        "source": str(profiled.source),
        "rows": len(profiled.tickets),
        "valid_rows": len(valid),
        "targets": list(profiled.labels),
        "targets_guessed": profiled.targets_guessed,
    }
    sections = [
        _overview(profiled, summary),
        _balance_section(profiled, summary),
        _length_section(full_texts, model_texts, options, summary),
        _language_section(tickets, full_texts, labels_valid, summary),
        _tag_section(tickets, summary),
        _missing_section(profiled, tickets, summary),
        _duplicate_section(model_texts, labels_valid, options, summary),
        _cooccurrence_section(profiled, tickets, summary),
        _terms_section(model_texts, labels_valid, options, summary),
    ]
    seconds = time.perf_counter() - started
    summary["seconds"] = seconds
    return Page(
        title=f"Data report: {profiled.source.name}",
        subtitle=f"{profiled.source} · {len(profiled.tickets):,} rows · created "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds:.1f} s by ticketflow report data",
        sections=sections,
        summary=summary,
    )


def _overview(profiled: Profiled, summary: dict[str, Any]) -> Section:
    section = Section("overview", "Overview")
    how = (
        "guessed (label-like columns; pass --target to choose)"
        if profiled.targets_guessed
        else ("as given with --target")
    )
    section.blocks += [
        f"{len(profiled.tickets):,} rows, {len(profiled.frame.columns)} columns; "
        f"{len(profiled.valid_rows):,} rows are valid tickets (the others are counted under "
        "'Empty or missing fields').",
        f"Targets {', '.join(profiled.labels) or 'none'}: {how}.",
        Table(
            ("column", "distinct values", "example"),
            [
                (
                    str(c),
                    _distinct(profiled.frame[c]),
                    shorten(str(profiled.frame[c].dropna().iloc[0]), 80)
                    if profiled.frame[c].notna().any()
                    else "",
                )
                for c in profiled.frame.columns
            ],
            caption="Columns of the file",
        ),
    ]
    if not profiled.labels:
        section.blocks.append(
            "!No target: no label-like column was found; pass --target COLUMN for the label "
            "sections."
        )
    return section


def _distinct(column: pd.Series) -> int:
    """Distinct non-missing values; tags read from JSONL or Parquet are lists or arrays,
    which do not hash."""
    values = column.dropna()
    return int(values.map(lambda v: tuple(v) if isinstance(v, list | np.ndarray) else v).nunique())


def _balance_section(profiled: Profiled, summary: dict[str, Any]) -> Section:
    section = Section("class-balance", "Class balance per target")
    section.blocks.append(
        "Rows per class. Classes with fewer than 5 rows cannot be split over the 5 CV folds "
        "of ticketflow train and experiments; a large imbalance ratio makes accuracy "
        "misleading (macro-F1 is reported instead)."
    )
    summary["class_balance"] = {}
    for target, labels in profiled.labels.items():
        rows = class_balance(labels)
        present = [(c, n) for c, n, _ in rows if c != MISSING]
        if not present:
            section.blocks.append(f"!{target}: every label is missing.")
            continue
        ratio = present[0][1] / present[-1][1]
        tiny = [c for c, n in present if n < 5]
        summary["class_balance"][target] = {
            "classes": len(present),
            "counts": dict(present),
            "missing": sum(label is None for label in labels),
            "imbalance_ratio": ratio,
            "under_5": tiny,
        }
        section.blocks.append(
            f"{target}: {len(present)} classes, largest/smallest = {ratio:.1f}"
            + (f"; fewer than 5 rows: {', '.join(tiny)}" if tiny else "")
        )
        shown = present[:MAX_CLASSES_PLOTTED]
        section.blocks.append(
            Figure(
                bar_figure(
                    [c for c, _ in shown],
                    [n for _, n in shown],
                    title=f"{target}: rows per class"
                    + (f" (largest {MAX_CLASSES_PLOTTED})" if len(present) > len(shown) else ""),
                    xlabel="rows",
                ),
                f"Class balance of {target}",
            )
        )
        section.blocks.append(
            Table(
                ("class", "rows", "share"),
                [(c, n, s) for c, n, s in rows],
                caption=f"{target}",
            )
        )
    return section


def _length_section(
    full_texts: Sequence[str],
    model_texts: Sequence[str],
    options: DataReportOptions,
    summary: dict[str, Any],
) -> Section:
    section = Section("text-length", "Text length: characters and model tokens")
    section.blocks.append(
        "The model text is subject, body and tags as ticketflow builds it (models/text.py). "
        f"Training cuts it at MAX_TEXT_CHARS = {options.max_text_chars:,} characters (the body "
        "first), then the encoder cuts at its token limit: what lies past either cut is never "
        "seen by the model."
    )
    chars = [len(t) for t in full_texts]
    char_summary = length_summary(chars, [options.max_text_chars])
    summary["characters"] = char_summary
    if chars:
        section.blocks.append(
            Figure(
                histogram_figure(
                    chars,
                    title="Characters per ticket (whole model text, before any cut)",
                    xlabel="characters",
                    cuts=[(options.max_text_chars, f"MAX_TEXT_CHARS {options.max_text_chars}")],
                ),
                "Characters per ticket with the MAX_TEXT_CHARS cut",
            )
        )
    info = find_tokenizer(options.model_name, options.export_root, max_tokens=options.max_tokens)
    token_summary: dict[str, Any] = {"tokenizer": info.source}
    table_rows = [
        (
            "characters",
            *_length_row(char_summary),
            options.max_text_chars,
            char_summary.get("over", {}).get(str(options.max_text_chars), math.nan),
        )
    ]
    if info.tokenizer is None:
        section.blocks.append(f"!Token lengths unavailable: {info.source}.")
    else:
        tokens = token_lengths(model_texts, info.tokenizer)
        cuts = [c for c in dict.fromkeys([info.cut, info.model_max]) if c]
        token_summary |= length_summary(tokens, cuts)
        token_summary |= {"cut": info.cut, "model_max": info.model_max}
        marks = []
        if info.cut:
            marks.append((float(info.cut), f"cut {info.cut} (EMBEDDING_MAX_TOKENS)"))
        if info.model_max and info.model_max != info.cut:
            marks.append((float(info.model_max), f"model max {info.model_max}"))
        section.blocks.append(
            Figure(
                histogram_figure(
                    tokens,
                    title="Tokens per ticket (model text after the character cut)",
                    xlabel="tokens incl. [CLS]/[SEP]",
                    cuts=marks,
                ),
                "Model tokens per ticket with the encoder's cut",
            )
        )
        for cut in cuts:
            table_rows.append(
                ("tokens", *_length_row(token_summary), cut, token_summary["over"][str(cut)])
            )
        section.blocks.append(f"Tokenizer: {info.source}.")
    summary["tokens"] = token_summary
    section.blocks.append(
        Table(
            ("measure", "mean", "p50", "p90", "p99", "max", "cut", "share over the cut"),
            table_rows,
            caption="Length per ticket",
        )
    )
    return section


def _length_row(summary: Mapping[str, Any]) -> tuple[object, ...]:
    if not summary.get("n"):
        return (math.nan,) * 5
    return (
        summary["mean"],
        int(summary["p50"]),
        int(summary["p90"]),
        int(summary["p99"]),
        int(summary["max"]),
    )


def _language_section(
    tickets: Sequence[Ticket],
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str | None]],
    summary: dict[str, Any],
) -> Section:
    section = Section("languages", "Languages")
    given = [t.language for t in tickets]
    if tickets and sum(v is not None for v in given) >= len(given) / 2:
        languages = [(v or UNKNOWN).lower() for v in given]
        how = "from the file's language column"
    else:
        languages = [guess_language(t) for t in texts]
        how = (
            "guessed from common words (en, de, es, fr, pt, it, nl; 'unknown' below two hits): "
            "the file has no language column, so experiments cannot report per-language F1"
        )
    counts = Counter(languages).most_common()
    summary["languages"] = {"source": how, "counts": dict(counts)}
    section.blocks.append(f"Languages {how}.")
    if counts:
        section.blocks.append(
            Figure(
                bar_figure(
                    [c for c, _ in counts[:30]],
                    [n for _, n in counts[:30]],
                    title="Tickets per language",
                    xlabel="tickets",
                ),
                "Tickets per language",
            )
        )
        section.blocks.append(
            Table(
                ("language", "tickets", "share"),
                [(lang, n, n / len(languages)) for lang, n in counts],
            )
        )
    return section


def _tag_section(tickets: Sequence[Ticket], summary: dict[str, Any]) -> Section:
    section = Section("tags", "Tags")
    tags = tag_summary([t.tags for t in tickets])
    summary["tags"] = {k: v for k, v in tags.items() if k != "per_ticket"}
    if not tags["with_tags"]:
        section.blocks.append(
            "No ticket has tags (no tags column, nor tag_1 … tag_n columns; map one with "
            "--map tags=COLUMN)."
        )
        return section
    section.blocks.append(
        f"{tags['with_tags']:,} of {tags['tickets']:,} tickets have tags; "
        f"{tags['distinct']:,} distinct tags, {tags['per_ticket_mean']:.2f} per ticket on average."
    )
    per_ticket = Counter(tags["per_ticket"])
    xs = sorted(per_ticket)
    section.blocks.append(
        Figure(
            bar_figure(
                [str(x) for x in xs],
                [per_ticket[x] for x in xs],
                title="Tags per ticket",
                xlabel="tickets",
            ),
            "Tags per ticket",
        )
    )
    top = tags["top"]
    section.blocks.append(
        Figure(
            bar_figure(
                [t for t, _ in top],
                [n for _, n in top],
                title=f"The {len(top)} most frequent tags",
                xlabel="tickets",
            ),
            "Most frequent tags",
        )
    )
    return section


def _missing_section(
    profiled: Profiled, tickets: Sequence[Ticket], summary: dict[str, Any]
) -> Section:
    section = Section("missing", "Empty or missing fields")
    columns = missing_fields(profiled.frame)
    n = max(1, len(tickets))
    fields = [
        ("subject", sum(not (t.subject or "").strip() for t in tickets)),
        ("body", sum(not (t.body or "").strip() for t in tickets)),
        ("tags", sum(not t.tags for t in tickets)),
        ("language", sum(t.language is None for t in tickets)),
    ]
    reasons = Counter(re.sub(r"\d+", "N", reason) for _, reason in profiled.invalid)
    summary["missing"] = {
        "columns": {c: {"missing": m, "blank": b} for c, m, b, _ in columns},
        "ticket_fields_empty": dict(fields),
        "invalid_rows": len(profiled.invalid),
        "invalid_reasons": dict(reasons.most_common(10)),
    }
    section.blocks += [
        Table(
            ("column", "missing", "blank", "share empty"),
            [(c, m, b, s) for c, m, b, s in columns],
            caption="Per column of the file",
        ),
        Table(
            ("ticket field", "empty", "share"),
            [(name, k, k / n) for name, k in fields],
            caption=f"Per ticket field, after --map ({len(tickets):,} valid tickets)",
        ),
    ]
    if profiled.invalid:
        first = ", ".join(str(row) for row, _ in profiled.invalid[:10])
        section.blocks += [
            f"!{len(profiled.invalid):,} rows are not valid tickets and are skipped by "
            f"ticketflow train (first rows: {first}).",
            Table(("reason", "rows"), list(reasons.most_common(10)), caption="Why"),
        ]
    else:
        section.blocks.append("Every row is a valid ticket.")
    return section


def _duplicate_section(
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str | None]],
    options: DataReportOptions,
    summary: dict[str, Any],
) -> Section:
    section = Section("duplicates", "Exact and near duplicates")
    exact = exact_duplicates(texts, labels)
    near = near_duplicates(texts, labels, queries=options.near_duplicate_queries, seed=options.seed)
    summary["exact_duplicates"] = exact
    summary["near_duplicates"] = near
    n = max(1, len(texts))
    section.blocks += [
        "Exact: the same model text once case and whitespace are folded. Duplicates that fall "
        "on both sides of a train/test split inflate test scores; copies with different labels "
        "cap the accuracy any model can reach.",
        Table(
            ("measure", "value"),
            [
                ("groups of identical texts", exact["groups"]),
                ("rows in those groups", exact["rows_in_groups"]),
                ("extra copies (rows a deduplication would drop)", exact["extra_copies"]),
                ("share of rows that are extra copies", exact["extra_copies"] / n),
                *(
                    (
                        f"groups with conflicting {t} labels (rows)",
                        f"{c['groups']:,} ({c['rows']:,})",
                    )
                    for t, c in exact["label_conflicts"].items()
                ),
            ],
            caption="Exact duplicates",
        ),
    ]
    if exact["largest"]:
        section.blocks.append(
            Table(
                ("copies", "text", "labels"),
                [
                    (g["rows"], g["text"], json.dumps(g["labels"], ensure_ascii=False))
                    for g in exact["largest"]
                ],
                caption="Largest groups",
            )
        )
    if "method" not in near:
        section.blocks.append("Too few tickets to look for near duplicates.")
        return section
    low, high = near["share_interval"]
    section.blocks += [
        f"Near: {near['method']}; exact duplicates excluded. {near['with_near_duplicate']:,} of "
        f"{near['sampled']:,} sampled tickets have a near duplicate in the file: "
        f"{near['share']:.1%} (95% CI {low:.1%}–{high:.1%}), about "
        f"{near['estimated_rows']:,} tickets in the whole file.",
        Table(
            ("target", "near-duplicate pairs with different labels"),
            [(t, v) for t, v in near["label_disagreement"].items()],
        ),
    ]
    if near["pairs"]:
        section.blocks.append(
            Table(
                ("cosine", "ticket", "near duplicate", "labels"),
                [
                    (p["cosine"], p["a"], p["b"], json.dumps(p["labels"], ensure_ascii=False))
                    for p in near["pairs"]
                ],
                caption="Examples (most similar first)",
            )
        )
    return section


def _cooccurrence_section(
    profiled: Profiled, tickets: Sequence[Ticket | None], summary: dict[str, Any]
) -> Section:
    section = Section("cooccurrence", "Label co-occurrence between targets")
    columns: dict[str, list[str | None]] = dict(profiled.labels)
    languages = [t.language.lower() if t and t.language else None for t in profiled.tickets]
    if sum(v is not None for v in languages) >= len(languages) / 2 and "language" not in columns:
        columns["language"] = languages
    names = list(columns)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if a in profiled.labels]
    summary["cooccurrence"] = {}
    if not pairs:
        section.blocks.append(
            "Only one label column: nothing to cross (with two targets, or a language column, "
            "this shows how far one predicts the other)."
        )
        return section
    section.blocks.append(
        "Rows of the first label against columns of the second, each row normalised to 1. "
        "Cramér's V and the normalised mutual information (NMI) are 0 for independent labels "
        "and 1 when one determines the other: a high value means two heads learn one thing."
    )
    table_rows = []
    for a, b in pairs:
        result = cooccurrence(columns[a], columns[b])
        if not result["n"]:
            continue
        summary["cooccurrence"][f"{a}×{b}"] = {
            "n": result["n"],
            "cramers_v": result["cramers_v"],
            "nmi": result["nmi"],
        }
        table_rows.append((a, b, result["n"], result["cramers_v"], result["nmi"]))
        counts = result["counts"]
        rows, cols = result["rows"], result["columns"]
        if len(rows) > MAX_CLASSES_PLOTTED or len(cols) > MAX_CLASSES_PLOTTED:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
        section.blocks.append(
            Figure(
                heatmap_figure(
                    share, rows, cols, counts=counts, title=f"{a} × {b}", ylabel=a, xlabel=b
                ),
                f"Co-occurrence of {a} and {b}",
            )
        )
    section.blocks.insert(
        1,
        Table(("first", "second", "rows", "Cramér's V", "NMI"), table_rows, caption="Association"),
    )
    return section


def _terms_section(
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str | None]],
    options: DataReportOptions,
    summary: dict[str, Any],
) -> Section:
    from sklearn.feature_extraction.text import CountVectorizer

    section = Section("terms", "Most telling terms per class")
    rows = list(range(len(texts)))
    if len(rows) > options.terms_max_rows:
        rng = np.random.default_rng(options.seed)
        rows = sorted(int(i) for i in rng.choice(len(rows), options.terms_max_rows, replace=False))
    section.blocks.append(
        "Word 1–2-grams (in at least 3 tickets) most over-represented in each class against "
        "all other classes: the z-score of the log-odds ratio with an informative Dirichlet "
        "prior (Monroe, Colaresi & Quinn 2008). Terms that name the label, a template or a "
        "signature point to leakage or shortcuts rather than content."
        + (f" Counted on {len(rows):,} sampled tickets." if len(rows) < len(texts) else "")
    )
    summary["terms"] = {}
    if not labels or not rows:
        section.blocks.append("No target: nothing to contrast.")
        return section
    sample = [texts[i] for i in rows]
    try:
        vectorizer = CountVectorizer(ngram_range=(1, 2), min_df=3, max_features=50_000)
        matrix = vectorizer.fit_transform(sample)
    except ValueError:  # no term in 3 tickets: a tiny file
        section.blocks.append("Too few repeated words to contrast classes.")
        return section
    for target, values in labels.items():
        terms = telling_terms(
            sample, [values[i] for i in rows], vectorizer=vectorizer, matrix=matrix
        )
        summary["terms"][target] = terms
        section.blocks.append(
            Table(
                ("class", "terms (z)"),
                [
                    (label, ", ".join(f"{term} ({z:.1f})" for term, z in found))
                    for label, found in sorted(terms.items())[:MAX_CLASSES_PLOTTED]
                ],
                caption=target,
            )
        )
    return section


__all__ = [
    "MAX_CLASSES_PLOTTED",
    "DataReportOptions",
    "build_data_report",
]
