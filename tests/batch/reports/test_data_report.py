"""The data report built from a small file made here: every section, the numbers behind it,
the command (no browser: see test_browser)."""

import csv
import json
import re
from pathlib import Path

import pytest

from ticketflow.batch.reports import data_report, profiling
from ticketflow.batch.reports.page import Table, render_html, write_page
from ticketflow.data.datasets import ColumnMapping
from ticketflow.data.errors import InputError
from ticketflow.devtools.sample import generate_tickets, write_tickets

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
    profiled = profiling.read_profiled(path, targets=None, mapping=ColumnMapping())
    assert profiled.targets_guessed and list(profiled.labels) == ["queue", "priority"]
    assert profiled.invalid and profiled.invalid[0][0] == 4  # 1-based row numbers
    page = data_report.build_data_report(
        profiled, data_report.DataReportOptions(export_root=tmp_path / "none")
    )
    assert [s.key for s in page.sections] == SECTIONS
    index = write_page(page, tmp_path / "out")
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
    profiled = profiling.read_profiled(
        path, targets=["Topic"], mapping=ColumnMapping.parse(["body=Document"])
    )
    page = data_report.build_data_report(profiled, data_report.DataReportOptions(export_root=None))
    assert page.summary["languages"]["source"].startswith("guessed from common words")
    assert page.summary["cooccurrence"] == {}
    text = render_html(page)
    assert "No ticket has tags" in text


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_data_report_reads_tags_stored_as_lists(tmp_path: Path, suffix: str) -> None:
    """What ``ticketflow sample --out x.jsonl`` (or .parquet) writes: tags are a list per
    row, which pandas cannot hash; the overview used to crash on them."""
    path = write_tickets(generate_tickets(60, seed=3), tmp_path / f"tickets{suffix}")
    profiled = profiling.read_profiled(path, targets=["queue"], mapping=ColumnMapping())
    page = data_report.build_data_report(profiled, data_report.DataReportOptions(export_root=None))
    overview = next(s for s in page.sections if s.key == "overview")
    columns = next(b for b in overview.blocks if isinstance(b, Table))
    distinct = {row[0]: row[1] for row in columns.rows}
    expected = len({tuple(r["tags"]) for r in generate_tickets(60, seed=3)})
    assert distinct["tags"] == expected > 1
    assert page.summary["tags"]["with_tags"] == 60


def test_data_report_refuses_an_unknown_target(tmp_path: Path) -> None:
    path = _sample_file(tmp_path)
    with pytest.raises(InputError, match="no column 'nope'"):
        profiling.read_profiled(path, targets=["nope"], mapping=ColumnMapping())


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
