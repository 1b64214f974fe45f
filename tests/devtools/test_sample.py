"""The sample generator: deterministic, realistic, noisy, learnable but not trivially."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ticketflow.data.datasets import ColumnMapping, load_labeled, read_table, rows_to_dicts
from ticketflow.devtools.sample import CHANNELS, FIELDS, QUEUES, generate_tickets, write_tickets
from ticketflow.schemas import Ticket

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return generate_tickets(1000, seed=3)


def test_same_seed_same_rows_and_other_seed_differs() -> None:
    assert generate_tickets(50, seed=1) == generate_tickets(50, seed=1)
    assert generate_tickets(50, seed=1) != generate_tickets(50, seed=2)


def test_rows_have_the_documented_fields(rows: list[dict[str, Any]]) -> None:
    for index, row in enumerate(rows, start=1):
        assert tuple(row) == FIELDS
        assert row["ticket_id"] == f"T-{index:06d}"
        tags = row["tags"]
        assert isinstance(tags, list) and 1 <= len(tags) <= 5
        assert len(set(tags)) == len(tags)
        assert row["queue"] in QUEUES
        assert row["type"] in {"Incident", "Request", "Problem", "Change"}
        assert row["priority"] in {"low", "medium", "high"}
        assert row["language"] in {"en", "de"}
        assert row["channel"] in CHANNELS
        assert isinstance(row["body"], str) and row["body"].strip()
        created = datetime.fromisoformat(str(row["created_at"]))
        assert created.utcoffset() == UTC.utcoffset(None)


def test_every_row_is_a_valid_ticket(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        Ticket.model_validate(row)


def test_created_at_grows_with_ticket_id(rows: list[dict[str, Any]]) -> None:
    times = [str(row["created_at"]) for row in rows]
    assert times == sorted(times)


def test_noise_and_imbalance_are_present(rows: list[dict[str, Any]]) -> None:
    bodies = [str(row["body"]) for row in rows]
    assert any("<br>" in body or "<p>" in body for body in bodies)
    assert any("\\n" in body for body in bodies)  # literal backslash-n, not a newline
    assert any("\n" in body for body in bodies)
    assert 0 < sum(row["subject"] is None for row in rows) < len(rows) * 0.2
    languages = Counter(row["language"] for row in rows)
    assert languages["en"] > 0.85 * len(rows) and languages["de"] > 0
    queues = Counter(row["queue"] for row in rows)
    assert set(queues) == set(QUEUES)
    counts = queues.most_common()
    assert counts[0][1] > 2 * counts[-1][1]


def test_texts_are_mostly_distinct() -> None:
    rows = generate_tickets(3000, seed=5)
    assert len({str(row["body"]) for row in rows}) > 0.95 * len(rows)


def test_tags_correlate_with_queue_but_do_not_give_it_away(rows: list[dict[str, Any]]) -> None:
    by_tag: dict[str, Counter[str]] = {}
    for row in rows:
        for tag in row["tags"]:
            by_tag.setdefault(tag, Counter())[row["queue"]] += 1
    assert any(len(queues) > 1 for queues in by_tag.values())
    billing = by_tag["Billing"]
    assert billing.most_common(1)[0][0] == "Billing and Payments"


def test_queue_is_learnable_but_not_trivially() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    # Small and unigram-only to stay fast; the report's n=2000 bigram figure is similar.
    rows = generate_tickets(1000, seed=42)
    texts = [f"{row['subject'] or ''} {row['body']}" for row in rows]
    labels = [str(row["queue"]) for row in rows]
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.2, random_state=0, stratify=labels
    )
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(x_train), y_train)
    accuracy = float(model.score(vectorizer.transform(x_test), y_test))
    assert 0.75 <= accuracy <= 0.96, accuracy


def test_urgent_words_raise_priority(rows: list[dict[str, Any]]) -> None:
    def high_share(selected: list[dict[str, Any]]) -> float:
        return sum(1 for row in selected if row["priority"] == "high") / len(selected)

    urgent_words = ("urgent", "outage", " is down", "critical", "URGENT")
    urgent = [r for r in rows if any(w in str(r["body"]) for w in urgent_words)]
    calm = [r for r in rows if r not in urgent]
    assert high_share(urgent) > 2 * high_share(calm)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_write_tickets_round_trips_through_read_table(tmp_path: Path, suffix: str) -> None:
    rows = generate_tickets(40, seed=9)
    path = write_tickets(rows, tmp_path / "nested" / f"tickets{suffix}")
    assert path.exists()
    back = rows_to_dicts(read_table(path), ColumnMapping())
    assert [r["ticket_id"] for r in back] == [r["ticket_id"] for r in rows]
    assert [r["tags"] for r in back] == [r["tags"] for r in rows]
    assert [r["body"] for r in back] == [r["body"] for r in rows]
    assert [r["subject"] for r in back] == [r["subject"] for r in rows]
    data = load_labeled(path, targets=["queue"], progress=False)
    assert len(data.tickets) == 40 and not data.skipped
    assert data.labels["queue"] == [r["queue"] for r in rows]


def test_write_jsonl_is_one_object_per_line(tmp_path: Path) -> None:
    rows = generate_tickets(5)
    path = write_tickets(rows, tmp_path / "t.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_write_csv_joins_tags(tmp_path: Path) -> None:
    rows = [{"ticket_id": "T-1", "body": "b", "tags": ["Billing", "Refund"]}]
    text = write_tickets(rows, tmp_path / "t.csv").read_text(encoding="utf-8")
    assert "Billing, Refund" in text


def test_write_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.jsonl, \.csv or \.parquet"):
        write_tickets(generate_tickets(1), tmp_path / "t.xlsx")


def test_negative_n_is_refused() -> None:
    with pytest.raises(ValueError, match="n must be"):
        generate_tickets(-1)
    assert generate_tickets(0) == []
