"""Reports a data scientist would otherwise build in a notebook, as one self-contained page.

* :func:`build_data_report` profiles a labelled file (``ticketflow report data``): class
  balance, text length in characters and in model tokens, languages, tags, empty fields,
  exact and near duplicates, label co-occurrence between targets, telling terms per class.
* :func:`build_performance_report` scores the model's stored labels against the labels people
  gave (corrections) or files gave (imports) in the vector store (``ticketflow report
  performance``): Evidently's classification preset per target plus a plain summary.

The computations are pure functions over lists (unit-tested on their own); the renderer
writes ``index.html`` with every plot embedded as a base64 PNG, so the page is one file that
opens anywhere, offline. The methods are written down in docs/reports.md.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from ticketflow.data.datasets import (
    DROPPED_COLUMNS,
    ColumnMapping,
    read_table,
    rows_to_dicts,
)
from ticketflow.data.errors import InputError
from ticketflow.models.embedding import resolve_model_source
from ticketflow.models.onnx_encoder import MANIFEST_FILE, TOKENIZER_FILE, export_dir_name
from ticketflow.models.text import build_text
from ticketflow.schemas import DEFAULT_LIMITS, FieldLimits, Ticket
from ticketflow.schemas import store as layout

logger = logging.getLogger(__name__)

NEAR_DUPLICATE_THRESHOLD = 0.9
NEAR_DUPLICATE_QUERIES = 2_000  # sampled tickets compared with every ticket of the file
TERMS_MAX_ROWS = 20_000  # telling terms are counted on a sample this large at most
TOP_TERMS = 10
TOP_TAGS = 25
MAX_CLASSES_PLOTTED = 40
SEED = 42
UNKNOWN = "unknown"
MISSING = "(missing)"

# ---------------------------------------------------------------------------------------------
# Report structure and HTML
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: Sequence[tuple[object, ...]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    png: bytes
    alt: str


@dataclass(frozen=True)
class Link:
    href: str
    text: str
    frame: bool = False  # also show the page in an iframe


Block = str | Table | Figure | Link


@dataclass
class Section:
    key: str  # the HTML id; tests and links rely on it
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str
    sections: list[Section]
    summary: dict[str, Any] = field(default_factory=dict)  # written as summary.json


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1rem 2rem;color:#1b1f24;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
.subtitle{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2rem 0}
figure{margin:.6rem 0 1rem}img{max-width:100%;height:auto}
figcaption{color:#57606a;font-size:.85rem}
nav ol{columns:2}iframe{width:100%;height:900px;border:1px solid #d0d7de}
p.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem}
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        text = "–" if math.isnan(value) else f"{value:,.3f}"
        return f'<td class="num">{text}</td>'
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f'<td class="num">{int(value):,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _render_block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in block.rows)
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        alt = html.escape(block.alt, quote=True)
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(block.alt)}</figcaption></figure>"
        )
    if isinstance(block, Link):
        href = html.escape(block.href, quote=True)
        link = f'<p><a href="{href}">{html.escape(block.text)}</a></p>'
        if block.frame:
            link += f'<iframe src="{href}" title="{html.escape(block.text, quote=True)}"></iframe>'
        return link
    if block.startswith("!"):  # a warning the reader must not miss
        return f'<p class="note">{html.escape(block[1:])}</p>'
    return f"<p>{html.escape(block)}</p>"


def render_html(page: Page) -> str:
    """The page as one HTML document: no script, no external asset."""
    toc = "".join(
        f'<li><a href="#{html.escape(s.key)}">{html.escape(s.title)}</a></li>'
        for s in page.sections
    )
    sections = "".join(
        f'<section id="{html.escape(s.key)}"><h2>{html.escape(s.title)}</h2>'
        + "".join(_render_block(b) for b in s.blocks)
        + "</section>"
        for s in page.sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(page.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(page.title)}</h1>"
        f'<p class="subtitle">{html.escape(page.subtitle)}</p>'
        f"<nav><ol>{toc}</ol></nav>{sections}</body></html>\n"
    )


def write_page(page: Page, out_dir: Path) -> Path:
    """``out_dir/index.html`` and ``out_dir/summary.json`` (the numbers behind the page)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(render_html(page), encoding="utf-8")
    (out_dir / "summary.json").write_text(
        json.dumps(page.summary, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    logger.info("wrote %s", index)
    return index


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path | datetime):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, PNG bytes)
# ---------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def bar_figure(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str) -> bytes:
    """Horizontal bars, the first label on top."""
    plt = _pyplot()
    shown = [_short(label, 40) for label in labels]
    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.28 * len(shown) + 1.2)))
    ax.barh(range(len(shown)), values, color="#4c72b0")
    ax.set_yticks(range(len(shown)), labels=shown, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def histogram_figure(
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    cuts: Sequence[tuple[float, str]] = (),
    bins: int = 60,
) -> bytes:
    """A histogram with vertical lines at ``cuts`` (value, legend label); the x axis stops at
    the 99.5th percentile (or past the last cut) so one huge ticket does not flatten it."""
    plt = _pyplot()
    data = np.asarray(values, dtype=np.float64)
    top = float(np.percentile(data, 99.5)) if len(data) else 1.0
    top = max([top, *(c * 1.1 for c, _ in cuts), 1.0])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist(np.clip(data, 0, top), bins=bins, range=(0, top), color="#4c72b0")
    for (value, label), colour in zip(cuts, ("#c44e52", "#dd8452", "#55a868"), strict=False):
        ax.axvline(value, color=colour, linestyle="--", linewidth=1.5, label=label)
    if cuts:
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tickets")
    ax.set_title(title)
    return _png(fig)


def heatmap_figure(
    matrix: npt.NDArray[np.float64],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    counts: npt.NDArray[np.int64] | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> bytes:
    """A heatmap of values in [0, 1]; ``counts`` are written in the cells when few enough."""
    plt = _pyplot()
    width = max(5.0, 0.45 * len(columns) + 3)
    height = max(3.0, 0.35 * len(rows) + 2)
    fig, ax = plt.subplots(figsize=(min(width, 14), min(height, 14)))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), labels=[_short(c, 25) for c in columns], rotation=45)
    ax.set_yticks(range(len(rows)), labels=[_short(r, 30) for r in rows])
    plt.setp(ax.get_xticklabels(), ha="right", fontsize=7)
    plt.setp(ax.get_yticklabels(), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if counts is not None and len(rows) * len(columns) <= 400:
        for i in range(len(rows)):
            for j in range(len(columns)):
                if counts[i, j]:
                    colour = "white" if matrix[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=colour
                    )
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _png(fig)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Data report: reading the file
# ---------------------------------------------------------------------------------------------


@dataclass
class Profiled:
    """A labelled file as the report sees it: every row, valid or not."""

    source: Path
    frame: pd.DataFrame  # the raw file
    tickets: list[Ticket | None]  # None: the row fails validation (reason in ``invalid``)
    labels: dict[str, list[str | None]]  # target -> label per row (None: missing)
    invalid: list[tuple[int, str]]  # (row number, reason)
    targets_guessed: bool = False

    @property
    def valid_rows(self) -> list[int]:
        return [i for i, t in enumerate(self.tickets) if t is not None]


def guess_targets(frame: pd.DataFrame, mapping: ColumnMapping) -> list[str]:
    """Label-like columns: not a ticket field, a tag or a language column, with 2 to 100
    distinct short values that repeat (each value on at least 2 rows on average)."""
    fields = {mapping.ticket_id, mapping.subject, mapping.body, mapping.tags}
    fields |= {"ticket_id", "subject", "body", "tags", "language", "created_at"}
    tag = re.compile(rf"^{re.escape(mapping.tag_prefix)}\d+$")
    found = []
    for column in frame.columns:
        name = str(column)
        if name in fields or name in DROPPED_COLUMNS or tag.match(name):
            continue
        values = frame[column].dropna().astype(str)
        distinct = values.nunique()
        if 2 <= distinct <= 100 and distinct * 2 <= len(values) and values.str.len().mean() < 60:
            found.append(name)
    return found


def read_profiled(
    path: Path,
    *,
    targets: Sequence[str] | None,
    mapping: ColumnMapping,
    limits: FieldLimits = DEFAULT_LIMITS,
    limit: int | None = None,
) -> Profiled:
    """Every row of ``path`` with its labels; rows the loader would skip are kept as None so
    that their missing fields show in the report. ``targets`` None: :func:`guess_targets`."""
    frame = read_table(path)
    if limit is not None:
        frame = frame.head(limit)
    guessed = targets is None or not targets
    chosen = guess_targets(frame, mapping) if guessed else list(targets or [])
    missing = [t for t in chosen if t not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(map(repr, missing))}; "
            f"columns are {', '.join(map(str, frame.columns))}"
        )
    records = rows_to_dicts(frame, mapping, id_prefix=path.stem, source=path)
    tickets: list[Ticket | None] = []
    invalid: list[tuple[int, str]] = []
    context = {"limits": limits}
    for row_number, record in enumerate(records, start=1):
        try:
            tickets.append(Ticket.model_validate(record, context=context))
        except ValidationError as exc:
            tickets.append(None)
            invalid.append((row_number, _reason(exc)))
    labels = {t: [_label(v) for v in frame[t].tolist()] for t in chosen}
    return Profiled(path, frame, tickets, labels, invalid, targets_guessed=guessed)


def _reason(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}" if location else str(error["msg"])


def _label(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


# ---------------------------------------------------------------------------------------------
# Data report: the computations (pure)
# ---------------------------------------------------------------------------------------------


def class_balance(labels: Sequence[str | None]) -> list[tuple[str, int, float]]:
    """(class, rows, share of the labelled rows), largest first; missing labels last."""
    counts = Counter(label for label in labels if label is not None)
    total = sum(counts.values())
    rows = [(label, n, n / total) for label, n in counts.most_common()]
    absent = sum(label is None for label in labels)
    if absent:
        rows.append((MISSING, absent, math.nan))
    return rows


def length_summary(values: Sequence[int], cuts: Sequence[int] = ()) -> dict[str, Any]:
    """Mean, percentiles and the share of values above each cut."""
    data = np.asarray(values, dtype=np.float64)
    if not len(data):
        return {"n": 0}
    summary: dict[str, Any] = {
        "n": len(data),
        "mean": float(data.mean()),
        **{f"p{q}": float(np.percentile(data, q)) for q in (5, 50, 90, 99)},
        "max": int(data.max()),
    }
    summary["over"] = {str(cut): float((data > cut).mean()) for cut in cuts}
    return summary


@dataclass(frozen=True)
class TokenizerInfo:
    tokenizer: Any | None  # tokenizers.Tokenizer
    source: str  # where it was found, or why there is none
    model_max: int | None  # the model's own max_seq_length
    cut: int | None  # where training cuts (EMBEDDING_MAX_TOKENS, else the model's)


def find_tokenizer(
    model_name: str, export_root: Path | None = None, *, max_tokens: int | None = None
) -> TokenizerInfo:
    """The tokenizer the encoder uses: an ONNX export's ``tokenizer.json`` (what the worker
    runs), else the model directory's (a local path or the package that ships it)."""
    candidates: list[tuple[Path, Path]] = []
    if export_root is not None:
        for backend in ("onnx-int8", "onnx"):
            directory = export_root / export_dir_name(model_name, backend)
            candidates.append((directory / TOKENIZER_FILE, directory / MANIFEST_FILE))
    source = Path(resolve_model_source(model_name))
    candidates.append((source / TOKENIZER_FILE, source / "sentence_bert_config.json"))
    for tokenizer_file, config in candidates:
        if not tokenizer_file.is_file():
            continue
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # a broken file or a missing package: say so, go on
            logger.warning("cannot read tokenizer %s: %s", tokenizer_file, exc)
            continue
        tokenizer.no_truncation()
        tokenizer.no_padding()
        model_max = None
        if config.is_file():
            data = json.loads(config.read_text(encoding="utf-8"))
            value = data.get("max_seq_length")
            model_max = int(value) if value else None
        return TokenizerInfo(tokenizer, str(tokenizer_file), model_max, max_tokens or model_max)
    return TokenizerInfo(
        None,
        f"no tokenizer.json found for {model_name!r} (looked in the ONNX exports under "
        f"{export_root} and in {source}): token lengths are not shown",
        None,
        max_tokens,
    )


def token_lengths(texts: Sequence[str], tokenizer: Any) -> list[int]:
    """Tokens per text, special tokens included ([CLS] … [SEP] count against the cut)."""
    lengths: list[int] = []
    for start in range(0, len(texts), 2_000):
        lengths.extend(
            len(e.ids) for e in tokenizer.encode_batch(list(texts[start : start + 2_000]))
        )
    return lengths


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the and to of is in for you your please with this that have on it be are we can not "
        "my i me our from will would thank thanks hello hi dear regards"
    ),
    "de": _words(
        "der die das und ist nicht ich sie wir mit für auf ein eine zu den von bitte danke "
        "haben ihr ihre uns mein meine hallo grüße"
    ),
    "es": _words(
        "el la los las y de que en por para con una un es su nos no mi hola gracias saludos "
        "estimado usted"
    ),
    "fr": _words(
        "le la les et de des que en pour avec une un est vous nous ne pas mon merci bonjour "
        "cordialement votre"
    ),
    "pt": _words("o a os as e de que em para com uma um é não meu minha obrigado olá você nós"),
    "it": _words("il lo la gli le e di che in per con una un è non mio mia grazie ciao salve"),
    "nl": _words("de het een en van ik je u niet met voor op is zijn wij bedankt"),
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def guess_language(text: str) -> str:
    """The language whose common words occur most (at least two hits), else ``unknown``.

    A heuristic for files without a language column; it only knows en, de, es, fr, pt, it, nl.
    """
    words = _WORD.findall(text.lower())[:300]
    hits = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    return best if hits[best] >= 2 else UNKNOWN


def tag_summary(tag_lists: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Tags per ticket, distinct tags and the most frequent ones (case as written)."""
    per_ticket = [len(tags) for tags in tag_lists]
    counts = Counter(tag for tags in tag_lists for tag in tags)
    return {
        "tickets": len(per_ticket),
        "with_tags": sum(n > 0 for n in per_ticket),
        "distinct": len(counts),
        "per_ticket": per_ticket,
        "per_ticket_mean": float(np.mean(per_ticket)) if per_ticket else 0.0,
        "top": counts.most_common(TOP_TAGS),
    }


def missing_fields(frame: pd.DataFrame) -> list[tuple[str, int, int, float]]:
    """Per file column: (column, missing cells, blank strings, share empty)."""
    rows = []
    n = max(1, len(frame))
    for column in frame.columns:
        series = frame[column]
        missing = int(series.isna().sum())
        present = series.dropna()
        blank = int(sum(isinstance(v, str) and not v.strip() for v in present.tolist()))
        rows.append((str(column), missing, blank, (missing + blank) / n))
    return rows


def normalise_for_duplicates(text: str) -> str:
    """Case and whitespace folded: "exact" duplicates differ in nothing else."""
    return " ".join(text.lower().split())


def exact_duplicates(
    texts: Sequence[str], labels: Mapping[str, Sequence[str | None]]
) -> dict[str, Any]:
    """Groups of rows with the same normalised text; per target, groups whose labels differ."""
    groups: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        groups.setdefault(normalise_for_duplicates(text), []).append(row)
    repeated = [rows for rows in groups.values() if len(rows) > 1]
    conflicts = {}
    for target, values in labels.items():
        clashing = [rows for rows in repeated if len({values[r] for r in rows if values[r]}) > 1]
        conflicts[target] = {"groups": len(clashing), "rows": sum(map(len, clashing))}
    largest = sorted(repeated, key=len, reverse=True)[:5]
    return {
        "groups": len(repeated),
        "rows_in_groups": sum(map(len, repeated)),
        "extra_copies": sum(len(rows) - 1 for rows in repeated),
        "label_conflicts": conflicts,
        "largest": [
            {
                "rows": len(rows),
                "text": texts[rows[0]][:160],
                "labels": {t: dict(Counter(str(v[r]) for r in rows)) for t, v in labels.items()},
            }
            for rows in largest
        ],
    }


def near_duplicates(
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str | None]],
    *,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
    queries: int = NEAR_DUPLICATE_QUERIES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Near duplicates by TF-IDF cosine: ``queries`` sampled tickets against every ticket.

    TF-IDF of word 1–2-grams (sublinear tf, L2), so cosine ≥ ``threshold`` means nearly the
    same words in nearly the same amounts. Exact duplicates (:func:`normalise_for_duplicates`)
    are left out: they have their own count. Comparing a sample with the whole file, not the
    sample with itself, estimates the share of tickets that have a near twin anywhere in
    the file (a sample against itself would find few of them).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(texts)
    if n < 2:
        return {"sampled": n, "with_near_duplicate": 0, "share": 0.0, "pairs": []}
    try:
        matrix = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(
            texts
        )
    except ValueError:  # no term in two tickets: nothing can be a near duplicate
        return {"sampled": 0, "with_near_duplicate": 0, "share": 0.0, "pairs": []}
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    keys = [normalise_for_duplicates(t) for t in texts]
    transposed = matrix.T.tocsc()
    found = 0
    pairs: list[tuple[float, int, int]] = []
    for start in range(0, len(chosen), 250):
        block = chosen[start : start + 250]
        sims = (matrix[block] @ transposed).toarray()
        for offset, row in enumerate(block):
            hits = np.flatnonzero(sims[offset] >= threshold)
            similar = [int(j) for j in hits if j != row and keys[j] != keys[row]]
            if similar:
                found += 1
                best = max(similar, key=lambda j: float(sims[offset, j]))
                pairs.append((float(sims[offset, best]), int(row), best))
    disagree = {}
    for target, values in labels.items():
        both = [(values[a], values[b]) for _, a, b in pairs if values[a] and values[b]]
        disagree[target] = sum(x != y for x, y in both) / len(both) if both else math.nan
    share = found / len(chosen)
    low, high = wilson_interval(found, len(chosen))
    pairs.sort(reverse=True)
    shown: list[tuple[float, int, int]] = []
    for sim, a, b in pairs:  # each pair once: b may have been sampled and found a as well
        if not any({a, b} == {x, y} for _, x, y in shown):
            shown.append((sim, a, b))
        if len(shown) == 8:
            break
    return {
        "method": f"TF-IDF word 1-2-grams, cosine >= {threshold}, {len(chosen)} sampled "
        f"tickets against all {n}",
        "sampled": len(chosen),
        "with_near_duplicate": found,
        "share": share,
        "share_interval": (low, high),
        "estimated_rows": round(share * n),
        "label_disagreement": disagree,
        "pairs": [
            {
                "cosine": sim,
                "a": texts[a][:160],
                "b": texts[b][:160],
                "labels": {t: (str(v[a]), str(v[b])) for t, v in labels.items()},
            }
            for sim, a, b in shown
        ],
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def cooccurrence(a: Sequence[str | None], b: Sequence[str | None]) -> dict[str, Any]:
    """Contingency table of two label columns (rows with both), Cramér's V and the
    normalised mutual information: how much one target tells about the other."""
    from sklearn.metrics import normalized_mutual_info_score

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return {"n": 0}
    rows = sorted({x for x, _ in pairs}, key=lambda v: -sum(x == v for x, _ in pairs))
    columns = sorted({y for _, y in pairs}, key=lambda v: -sum(y == v for _, y in pairs))
    r_index = {v: i for i, v in enumerate(rows)}
    c_index = {v: i for i, v in enumerate(columns)}
    counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for x, y in pairs:
        counts[r_index[x], c_index[y]] += 1
    return {
        "n": len(pairs),
        "rows": rows,
        "columns": columns,
        "counts": counts,
        "cramers_v": cramers_v(counts),
        "nmi": float(normalized_mutual_info_score([x for x, _ in pairs], [y for _, y in pairs])),
    }


def cramers_v(counts: npt.NDArray[np.int64]) -> float:
    """Cramér's V of a contingency table (0: independent, 1: one determines the other)."""
    total = counts.sum()
    if total == 0 or min(counts.shape) < 2:
        return 0.0
    expected = np.outer(counts.sum(axis=1), counts.sum(axis=0)) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = float(np.nansum((counts - expected) ** 2 / expected))
    return math.sqrt(chi2 / (total * (min(counts.shape) - 1)))


def telling_terms(
    texts: Sequence[str],
    labels: Sequence[str | None],
    *,
    top: int = TOP_TERMS,
    vectorizer: Any | None = None,
    matrix: Any | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Per class, the terms most over-represented in it against all other classes.

    Log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008,
    "Fightin' Words"), the prior being the term counts of the whole text: a z-score per term
    and class that does not favour rare terms as raw ratios do nor frequent ones as raw
    differences do. Counts of word 1–2-grams seen in at least 3 tickets; ``vectorizer`` and
    its ``matrix`` can be shared between targets.
    """
    if vectorizer is None or matrix is None:
        from sklearn.feature_extraction.text import CountVectorizer

        vectorizer = CountVectorizer(ngram_range=(1, 2), min_df=3, max_features=50_000)
        matrix = vectorizer.fit_transform(texts)
    keep = [i for i, label in enumerate(labels) if label is not None]
    if not keep:
        return {}
    counts = matrix[keep]
    y = [str(labels[i]) for i in keep]
    classes = sorted(set(y))
    vocabulary = np.asarray(vectorizer.get_feature_names_out())
    onehot = np.zeros((len(classes), len(y)))
    index = {c: i for i, c in enumerate(classes)}
    for row, label in enumerate(y):
        onehot[index[label], row] = 1.0
    per_class = np.asarray((counts.T @ onehot.T).T)  # classes x terms
    total = per_class.sum(axis=0)
    prior = total + 0.01  # the informative prior: counts of the whole text
    prior_sum = prior.sum()
    result: dict[str, list[tuple[str, float]]] = {}
    for c, label in enumerate(classes):
        inside = per_class[c]
        outside = total - inside
        n_in, n_out = inside.sum(), outside.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.log((inside + prior) / (n_in + prior_sum - inside - prior)) - np.log(
                (outside + prior) / (n_out + prior_sum - outside - prior)
            )
            z = delta / np.sqrt(1.0 / (inside + prior) + 1.0 / (outside + prior))
        z = np.nan_to_num(z, nan=0.0, neginf=0.0, posinf=0.0)
        best = np.argsort(-z)[:top]
        result[label] = [(str(vocabulary[i]), float(z[i])) for i in best if z[i] > 0]
    return result


# ---------------------------------------------------------------------------------------------
# Data report: assembling the page
# ---------------------------------------------------------------------------------------------


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
                    _short(str(profiled.frame[c].dropna().iloc[0]), 80)
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


# ---------------------------------------------------------------------------------------------
# Performance report: model labels against the labels people and files gave
# ---------------------------------------------------------------------------------------------


@dataclass
class Scored:
    """One target's labelled tickets: the known label next to the model's."""

    truth: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    source: list[str] = field(default_factory=list)  # human | imported
    model_version: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.truth)


def store_targets(metadatas: Iterable[Mapping[str, Any]]) -> list[str]:
    """Targets some record has a known label of (``human_<t>`` or ``imported_<t>``)."""
    found: set[str] = set()
    for metadata in metadatas:
        for key in metadata:
            for prefix in (layout.HUMAN_PREFIX, layout.IMPORTED_PREFIX):
                if key.startswith(prefix) and key != layout.IMPORT_SOURCE:
                    found.add(key[len(prefix) :])
    return sorted(found)


def scored_labels(
    metadatas: Iterable[Mapping[str, Any]],
    targets: Sequence[str],
    *,
    since: float | None = None,
) -> dict[str, Scored]:
    """Per target, the records with both a known label (a person's correction, else an
    imported one: :func:`ticketflow.schemas.store.known_label`) and the model's label
    (:func:`~ticketflow.schemas.store.model_label`). ``since``: only tickets the model
    labelled at or after this epoch second (``processed_at``)."""
    result = {t: Scored() for t in targets}
    for metadata in metadatas:
        processed = metadata.get("processed_at")
        if since is not None and (processed is None or float(processed) < since):
            continue
        for target in targets:
            truth = layout.known_label(metadata, target)
            model = layout.model_label(metadata, target)
            if truth is None or model is None:
                continue
            scored = result[target]
            scored.truth.append(truth)
            scored.predicted.append(model[0])
            scored.probability.append(model[1])
            human = layout.human_label(metadata, target) is not None
            source = layout.LabelSource.HUMAN if human else layout.LabelSource.IMPORTED
            scored.source.append(source.value)
            scored.model_version.append(str(metadata.get("model_version", "?")))
    return result


def performance_summary(scored: Scored) -> dict[str, Any]:
    """Accuracy and macro-F1, overall, per label source and per model version."""
    from sklearn.metrics import accuracy_score, f1_score

    def numbers(rows: Sequence[int]) -> dict[str, Any]:
        truth = [scored.truth[i] for i in rows]
        predicted = [scored.predicted[i] for i in rows]
        return {
            "n": len(rows),
            "accuracy": float(accuracy_score(truth, predicted)) if rows else math.nan,
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))
            if rows
            else math.nan,
        }

    everything = list(range(len(scored)))
    by_source = {
        str(s): numbers([i for i in everything if scored.source[i] == s])
        for s in sorted(set(scored.source))
    }
    by_version = {
        v: numbers([i for i in everything if scored.model_version[i] == v])
        for v in sorted(set(scored.model_version))
    }
    return {"all": numbers(everything), "by_source": by_source, "by_version": by_version}


def evidently_report(scored: Scored, target: str, path: Path) -> Path:
    """Evidently's ``ClassificationPreset`` (accuracy, precision, recall, F1, per-class
    quality, confusion matrix) of the model's labels against the known ones, as HTML."""
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset

    # Named after the target, so Evidently's titles say which one ("Target: 'queue'").
    predicted = f"{target} (model)"
    frame = pd.DataFrame({target: scored.truth, predicted: scored.predicted})
    definition = DataDefinition(
        categorical_columns=[target, predicted],
        classification=[MulticlassClassification(target=target, prediction_labels=predicted)],
    )
    dataset = Dataset.from_pandas(frame, data_definition=definition)
    snapshot = Report([ClassificationPreset()], metadata={"target": target}).run(
        current_data=dataset
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def build_performance_report(
    scored: Mapping[str, Scored],
    out_dir: Path,
    *,
    source: str,
    since: datetime | None,
    min_labels: int,
    records: int,
) -> Page:
    """The summary page, and one Evidently report per target with at least ``min_labels``
    labelled tickets (``out_dir/evidently-<target>.html``, shown in the page)."""
    window = f"since {since:%Y-%m-%d %H:%M} UTC" if since else "all time"
    summary: dict[str, Any] = {
        "source": source,
        "records": records,
        "since": since.isoformat() if since else None,
        "min_labels": min_labels,
        "targets": {},
    }
    overview = Section("summary", "Summary")
    overview.blocks.append(
        f"{records:,} tickets read from {source} ({window}). Truth is a person's correction "
        "where there is one, else the label an imported file gave; the model's label is the "
        "one it stored before any correction."
    )
    overview.blocks.append(
        "!Corrected tickets are the ones people chose to fix, mostly where the model was "
        "wrong or held for review: accuracy on human labels understates the model. Imported "
        "labels are a sample of the history, unbiased in that respect: compare the rows per "
        "label source."
    )
    table_rows: list[tuple[object, ...]] = []
    sections: list[Section] = [overview]
    too_few: list[str] = []
    for target, rows in scored.items():
        numbers = performance_summary(rows)
        summary["targets"][target] = numbers
        for name, part in [("all", numbers["all"]), *sorted(numbers["by_source"].items())]:
            table_rows.append((target, name, part["n"], part["accuracy"], part["macro_f1"]))
        section = Section(f"target-{_slug(target)}", f"{target}")
        if len(rows) < min_labels:
            too_few.append(target)
            section.blocks.append(
                f"!Too few labelled tickets for {target}: {len(rows)} (at least {min_labels} "
                "needed, --min-labels). Correct labels with ticketflow feedback or import a "
                "labelled file with ticketflow backfill."
            )
            sections.append(section)
            continue
        versions = numbers["by_version"]
        section.blocks.append(
            Table(
                ("model version", "tickets", "accuracy", "macro-F1"),
                [(v, p["n"], p["accuracy"], p["macro_f1"]) for v, p in versions.items()],
                caption="Per model version",
            )
        )
        name = f"evidently-{_slug(target)}.html"
        evidently_report(rows, target, out_dir / name)
        section.blocks.append(
            Link(
                name,
                f"Evidently classification report of {target} ({len(rows):,} tickets)",
                frame=True,
            )
        )
        sections.append(section)
    overview.blocks.append(
        Table(
            ("target", "labels", "tickets", "accuracy", "macro-F1"),
            table_rows,
            caption="Model labels against known labels",
        )
    )
    if not scored:
        overview.blocks.append(
            "!No labelled tickets: no record carries a person's correction or an imported "
            "label. Correct labels with ticketflow feedback or import a labelled file with "
            "ticketflow backfill."
        )
    elif too_few:
        overview.blocks.append(
            f"!Too few labelled tickets for {', '.join(too_few)} (fewer than {min_labels})."
        )
    summary["too_few"] = too_few
    return Page(
        title="Live accuracy",
        subtitle=f"{source} · {window} · created {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        "ticketflow report performance",
        sections=sections,
        summary=summary,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "_"


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``2026-11-01``, ``2026-11-01T08:00`` (UTC unless it says otherwise), or a duration
    back from now: ``90m``, ``24h``, ``7d``, ``2w``."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", value)
    if match:
        from datetime import timedelta

        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InputError(
            f"--since {value!r}: use a date (2026-11-01), a time (2026-11-01T08:00) or a "
            "duration back from now (90m, 24h, 7d, 2w)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


__all__ = [
    "DataReportOptions",
    "Page",
    "Scored",
    "build_data_report",
    "build_performance_report",
    "class_balance",
    "cooccurrence",
    "exact_duplicates",
    "find_tokenizer",
    "guess_language",
    "near_duplicates",
    "parse_since",
    "read_profiled",
    "render_html",
    "scored_labels",
    "store_targets",
    "telling_terms",
    "write_page",
]
