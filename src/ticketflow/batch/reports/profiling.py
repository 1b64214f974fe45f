"""The data report's numbers: a labelled file read row by row (valid or not) and the pure
computations over it (class balance, lengths, languages, tags, missing fields, duplicates,
label co-occurrence, telling terms), each unit-tested on its own. Methods: docs/reports.md.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from ticketflow.data.datasets import (
    DEFAULT_ENCODING,
    DROPPED_COLUMNS,
    ColumnMapping,
    read_table,
    rows_to_dicts,
)
from ticketflow.data.errors import InputError
from ticketflow.models.embedding import resolve_model_source
from ticketflow.models.onnx_encoder import MANIFEST_FILE, TOKENIZER_FILE, export_dir_name
from ticketflow.schemas import DEFAULT_LIMITS, FieldLimits, Ticket

logger = logging.getLogger(__name__)

NEAR_DUPLICATE_THRESHOLD = 0.9
NEAR_DUPLICATE_QUERIES = 2_000  # sampled tickets compared with every ticket of the file
TERMS_MAX_ROWS = 20_000  # telling terms are counted on a sample this large at most
TOP_TERMS = 10
TOP_TAGS = 25
SEED = 42
UNKNOWN = "unknown"
MISSING = "(missing)"

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
    encoding: str = DEFAULT_ENCODING,
) -> Profiled:
    """Every row of ``path`` with its labels; rows the loader would skip are kept as None so
    that their missing fields show in the report. ``targets`` None: :func:`guess_targets`."""
    frame = read_table(path, encoding=encoding)
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


__all__ = [
    "MISSING",
    "NEAR_DUPLICATE_QUERIES",
    "NEAR_DUPLICATE_THRESHOLD",
    "SEED",
    "TERMS_MAX_ROWS",
    "TOP_TAGS",
    "TOP_TERMS",
    "UNKNOWN",
    "Profiled",
    "TokenizerInfo",
    "class_balance",
    "cooccurrence",
    "cramers_v",
    "exact_duplicates",
    "find_tokenizer",
    "guess_language",
    "guess_targets",
    "length_summary",
    "missing_fields",
    "near_duplicates",
    "normalise_for_duplicates",
    "read_profiled",
    "tag_summary",
    "telling_terms",
    "token_lengths",
    "wilson_interval",
]
