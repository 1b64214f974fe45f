"""Both reports opened in real headless Chromium: the sections are there, every image
decoded, and Evidently's page rendered its classification report.

Chromium is a prerequisite (docs/reports.md; .ci/run installs it): without it these tests
fail, they do not skip. Each page is loaded from a copy with a small probe script appended
that, on ``load``, writes what it found (sections, images and their ``naturalWidth``) into
an attribute of ``<body>``; ``--dump-dom`` then prints the DOM after the scripts ran.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.batch.reports.test_data_report import SECTIONS
from ticketflow.cli import main
from ticketflow.devtools.sample import generate_tickets
from ticketflow.schemas import store as layout
from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.labeled import LabeledTicket, SourcePosition, TargetPrediction

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTALL = "apt-get install -y chromium chromium-driver"
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-probe", JSON.stringify({
    sections: Array.from(document.querySelectorAll("section")).map((s) => s.id),
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
    widths: images.map((i) => i.naturalWidth),
  }));
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"chromium is not installed: run `{INSTALL}` (docs/reports.md)")


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, as headless Chromium serialises it."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # tests run as root in CI
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",  # lets load handlers and React renders finish
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def probe(index: Path, profile: Path) -> dict[str, Any]:
    """Open a copy of ``index`` with the probe (next to it: relative links still resolve)."""
    text = index.read_text(encoding="utf-8")
    assert "</body>" in text
    probed = index.with_name("probe-" + index.name)
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = dump_dom(probed, profile)
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe script did not run: " + dom[:500]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def rendered_text(dom: str) -> str:
    """The visible text of a DOM dump: scripts and styles out, tags out, spaces folded."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_data_report_opens_in_chromium_with_every_section_and_image(tmp_path: Path) -> None:
    chromium()  # fail before the work when it is missing
    rows = generate_tickets(400, seed=8)
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket_id", "subject", "body", "tags", "language", "queue", "priority"])
        for t in rows:
            writer.writerow(
                [
                    t["ticket_id"],
                    t["subject"] or "",
                    t["body"],
                    ";".join(t["tags"]),
                    t["language"],
                    t["queue"],
                    t["priority"],
                ]
            )
    out = tmp_path / "data"
    assert main(["report", "data", "--data", str(path), "--out", str(out)]) == 0

    found = probe(out / "index.html", tmp_path / "profile")
    assert found["sections"] == SECTIONS
    # class balance x2, characters, tokens, languages, tags x2, co-occurrence (3 pairs)
    assert found["images"] >= 10
    assert found["broken"] == []
    assert all(width >= 300 for width in found["widths"])


def _stored(
    i: int, said: str, probability: float, processed: datetime
) -> dict[str, layout.MetadataValue]:
    labeled = LabeledTicket(
        ticket_id=f"T-{i}",
        predictions={
            "queue": TargetPrediction(
                label=said,
                probability=probability,
                top=[],
                needs_review=probability < 0.5,
                review_threshold=0.5,
            )
        },
        needs_review=probability < 0.5,
        review_gate=["queue"],
        model_version="v1",
        embedding_model="test/space",
        event_time=None,
        processed_time=processed,
        source=SourcePosition(topic="tickets", partition=0, offset=i),
    )
    return layout.labeled_metadata(labeled)


def test_performance_report_opens_in_chromium_with_evidently_rendered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client

    chromium()  # fail before the work when it is missing
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
        "tickets",
        embedding_model="test/space",
        dimension=4,
    )
    rng = np.random.default_rng(3)
    classes = ["Billing", "Technical", "Returns"]
    now = datetime.now(UTC)
    ids, metadatas, truth, said_all = [], [], [], []
    for i in range(90):
        true = classes[int(rng.integers(3))]
        said = true if rng.random() < 0.75 else classes[(classes.index(true) + 1) % 3]
        metadata = _stored(i, said, float(rng.uniform(0.3, 1.0)), now)
        if i % 3 == 0:  # a person corrected it (or confirmed it)
            feedback = LabelFeedback(ticket_id=f"T-{i}", labels={"queue": true}, corrected_by="a")
            metadata |= layout.correction_metadata(feedback, metadata)
        elif i % 3 == 1:  # a historical file gave the label
            metadata[f"{layout.IMPORTED_PREFIX}queue"] = true
            metadata[f"queue{layout.PREDICTED_SUFFIX}"] = said
            metadata["queue"] = true
        else:  # the model's label alone: not scored
            ids.append(f"T-{i}")
            metadatas.append(metadata)
            continue
        ids.append(f"T-{i}")
        metadatas.append(metadata)
        truth.append(true)
        said_all.append(said)
    store.upsert(ids, np.eye(4, dtype=np.float32)[np.arange(len(ids)) % 4], metadatas)
    accuracy = float(np.mean(np.asarray(truth) == np.asarray(said_all)))

    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    out = tmp_path / "performance"
    assert main(["report", "performance", "--since", "1d", "--out", str(out)]) == 0

    found = probe(out / "index.html", tmp_path / "profile")
    assert found["sections"] == ["summary", "target-queue"]
    assert found["broken"] == []
    index = rendered_text(dump_dom(out / "index.html", tmp_path / "profile"))
    assert f"queue all 60 {accuracy:.3f}" in index

    evidently = rendered_text(dump_dom(out / "evidently-queue.html", tmp_path / "profile"))
    # Rendered by Evidently's script (the text is not in the page outside its scripts).
    assert "Classification Quality by Label" in evidently
    assert "Confusion Matrix" in evidently
    shown = re.search(r"([0-9.]+) Accuracy", evidently)
    assert shown and float(shown.group(1)) == pytest.approx(accuracy, abs=5e-4)
    for label in classes:
        assert label in evidently

    # Nothing labelled since tomorrow: the page says so instead of scoring nothing.
    assert main(["report", "performance", "--since", "2099-01-01", "--out", str(out)]) == 0
    empty = rendered_text(dump_dom(out / "index.html", tmp_path / "profile"))
    assert "Too few labelled tickets for queue: 0" in empty
