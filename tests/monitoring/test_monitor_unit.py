"""The monitor's loop core (DriftMonitor) with synthetic records: no Kafka, no encoder."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.monitoring.synthetic import make_sample
from ticketflow.monitoring.drift import MonitorSample
from ticketflow.monitoring.drift_metrics import MonitorMetrics
from ticketflow.monitoring.monitor import DriftMonitor
from ticketflow.monitoring.reference import ReferenceError, load_reference, write_sample_reference
from ticketflow.monitoring.report import ReportLimiter, write_report
from ticketflow.monitoring.sample import records_sample
from ticketflow.schemas import DriftEvent, MonitorRecord

SHIFTED_MIX = (0.05, 0.05, 0.05, 0.40, 0.40, 0.05)


def records(sample: MonitorSample, version: str = "v1", prefix: str = "T") -> list[bytes]:
    out = []
    for i in range(len(sample)):
        out.append(
            MonitorRecord(
                ticket_id=f"{prefix}-{i}",
                model_version=version,
                embedding_model="enc",
                vector_f16_b64=base64.b64encode(
                    np.asarray(sample.vectors[i], dtype="<f2").tobytes()
                ).decode(),
                dimension=sample.vectors.shape[1],
                labels={t: v[i] for t, v in sample.labels.items()},
                probabilities={t: v[i] for t, v in sample.probabilities.items()},
                needs_review=bool(sample.needs_review[i]) if sample.needs_review else False,
                text_length=sample.text_lengths[i],
                language=sample.languages[i],
                processed_time=datetime.now(UTC),
            )
            .model_dump_json()
            .encode()
        )
    return out


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    full = make_sample(2000, seed=0)
    write_sample_reference(
        tmp_path,
        model_version="v1",
        sample=full,
    )
    return tmp_path


def make_monitor(reference_dir: Path, published: list[tuple[bytes, bytes]]) -> DriftMonitor:
    return DriftMonitor(
        references=lambda v: load_reference(reference_dir, v),
        metrics=MonitorMetrics(),
        publish=lambda k, v: published.append((k, v)),
        window_size=200,
        window_seconds=60.0,
        min_window=50,
    )


@pytest.mark.unit
def test_in_distribution_then_shifted_stream(reference_dir: Path) -> None:
    published: list[tuple[bytes, bytes]] = []
    monitor = make_monitor(reference_dir, published)
    for value in records(make_sample(1000, seed=11)):
        monitor.handle(value, now=0.0)
    assert len(monitor.results) == 5 and not any(r.drifted for r in monitor.results)
    assert published == []
    events = []
    for value in records(make_sample(400, seed=12, weights=SHIFTED_MIX), prefix="S"):
        events += monitor.handle(value, now=1.0)
    assert len(events) == 2  # both shifted windows
    key, value = published[0]
    event = DriftEvent.model_validate_json(value)
    assert key == b"v1" and event.window_size == 200 and event.drifted
    assert any(f.feature == "embedding" and f.drifted for f in event.features)
    r = monitor.metrics.registry
    assert r.get_sample_value("ticketflow_drift_detected") == 1
    assert r.get_sample_value("ticketflow_drift_windows_total", {"outcome": "ok"}) == 5
    assert r.get_sample_value("ticketflow_drift_windows_total", {"outcome": "drift"}) == 2
    assert r.get_sample_value("ticketflow_drift_events_total") == 2
    assert r.get_sample_value("ticketflow_drift_window_size") == 200
    assert r.get_sample_value("ticketflow_monitor_records_total") == 1400
    assert r.get_sample_value("ticketflow_drift_feature_drifted", {"feature": "label:queue"}) == 1
    version = load_reference(reference_dir, "v1").reference_version
    info = {"model_version": "v1", "reference_version": version}
    assert r.get_sample_value("ticketflow_drift_reference_info", info) == 1


@pytest.mark.unit
def test_time_windows_bad_records_and_unknown_models(reference_dir: Path) -> None:
    published: list[tuple[bytes, bytes]] = []
    monitor = make_monitor(reference_dir, published)
    for value in records(make_sample(80, seed=3)):
        monitor.handle(value, now=0.0)
    monitor.handle(b"not json", now=0.0)
    for value in records(make_sample(5, seed=4), version="v-unknown"):
        monitor.handle(value, now=0.0)
    assert monitor.tick(30.0) == [] and monitor.results == []
    monitor.tick(61.0)  # 80 records >= min_window: evaluated on time
    assert len(monitor.results) == 1 and monitor.results[0].window_size == 80
    r = monitor.metrics.registry
    assert (
        r.get_sample_value("ticketflow_monitor_records_skipped_total", {"reason": "undecodable"})
        == 1
    )
    assert (
        r.get_sample_value("ticketflow_monitor_records_skipped_total", {"reason": "no_reference"})
        == 5
    )
    for value in records(make_sample(10, seed=5)):
        monitor.handle(value, now=100.0)
    monitor.tick(200.0)  # 10 < min_window: not evaluated
    assert len(monitor.results) == 1


def _write_reference(directory: Path, version: str, seed: int) -> str:
    full = make_sample(400, seed=seed)
    write_sample_reference(
        directory,
        model_version=version,
        sample=full,
    )
    return load_reference(directory, version).reference_version


@pytest.mark.unit
def test_reference_info_names_the_reference_of_the_last_window_after_a_rollback(
    reference_dir: Path,
) -> None:
    """v1 -> v2 -> rollback to v1: the gauge follows the windows, not the first load."""
    v1 = load_reference(reference_dir, "v1").reference_version
    v2 = _write_reference(reference_dir, "v2", seed=1)
    monitor = make_monitor(reference_dir, [])
    for version, seed in (("v1", 21), ("v2", 22), ("v1", 23)):
        for value in records(make_sample(200, seed=seed), version=version, prefix=version):
            monitor.handle(value, now=0.0)
    r = monitor.metrics.registry
    info = "ticketflow_drift_reference_info"
    assert r.get_sample_value(info, {"model_version": "v1", "reference_version": v1}) == 1
    assert r.get_sample_value(info, {"model_version": "v2", "reference_version": v2}) is None
    assert len(monitor.results) == 3


@pytest.mark.unit
def test_a_reference_built_after_the_first_skip_is_picked_up(reference_dir: Path) -> None:
    """The skip's remedy (``ticketflow drift reference --version``) works without a restart."""
    monitor = DriftMonitor(
        references=lambda v: load_reference(reference_dir, v),
        metrics=MonitorMetrics(),
        publish=lambda k, v: None,
        window_size=100,
        window_seconds=600.0,
        min_window=50,
        reference_retry_s=30.0,
    )
    for value in records(make_sample(100, seed=31), version="v2"):
        monitor.handle(value, now=0.0)
    skipped = {"reason": "no_reference"}
    r = monitor.metrics.registry
    assert r.get_sample_value("ticketflow_monitor_records_skipped_total", skipped) == 100
    _write_reference(reference_dir, "v2", seed=1)
    for value in records(make_sample(100, seed=32), version="v2"):
        monitor.handle(value, now=10.0)  # retried at most every 30 s: still skipped
    assert r.get_sample_value("ticketflow_monitor_records_skipped_total", skipped) == 200
    for value in records(make_sample(100, seed=33), version="v2"):
        monitor.handle(value, now=40.0)
    assert r.get_sample_value("ticketflow_monitor_records_skipped_total", skipped) == 200
    assert len(monitor.results) == 1 and monitor.results[0].window_size == 100


@pytest.mark.unit
def test_report_limiter() -> None:
    limiter = ReportLimiter(min_interval_s=60)
    assert limiter.allow(0.0) and not limiter.allow(59.0) and limiter.allow(60.0)


@pytest.mark.unit
def test_missing_reference_raises(tmp_path: Path) -> None:
    with pytest.raises(ReferenceError):
        load_reference(tmp_path, "v1")


def _counters(html: str) -> list[dict[str, str]]:
    """The counter widgets of an Evidently HTML report (its data is embedded as JSON)."""
    found = []
    marker = '"counters": '
    start = 0
    while (start := html.find(marker, start)) != -1:
        end = html.find("]", start)
        found += json.loads(html[start + len(marker) : end + 1])
        start = end
    return found


@pytest.mark.slow
@pytest.mark.unit
def test_drift_report_html_shows_the_drift(reference_dir: Path, tmp_path: Path) -> None:
    """The monitor writes the report on drift; parse the HTML's embedded widget data."""
    published: list[tuple[bytes, bytes]] = []
    monitor = make_monitor(reference_dir, published)
    monitor.report_dir = tmp_path / "reports"
    monitor.report_limiter = ReportLimiter(3600)
    with ThreadPoolExecutor(max_workers=1) as pool:
        monitor.reporter = pool
        events = []
        for value in records(make_sample(400, seed=12, weights=SHIFTED_MIX)):
            events += monitor.handle(value, now=0.0)
    assert len(events) == 2
    assert events[0].report_path is not None and events[1].report_path is None  # rate limited
    html = Path(events[0].report_path).read_text(encoding="utf-8")
    counters = _counters(html)
    embedding = next(c for c in counters if "Drift in embeddings" in c["value"])
    assert embedding["label"].startswith("Data drift detected")
    dataset = next(c for c in counters if c["label"] == "Drifted Columns")
    assert int(dataset["value"]) >= 1
    assert '"big_graph"' in html or "scatter" in html  # the plots are there
    assert monitor.metrics.registry.get_sample_value("ticketflow_drift_reports_total") == 1


@pytest.mark.unit
def test_records_sample_decodes_vectors() -> None:
    sample = make_sample(10, seed=1)
    decoded = records_sample([MonitorRecord.model_validate_json(v) for v in records(sample)])
    assert np.allclose(decoded.vectors, sample.vectors, atol=1e-3)
    assert decoded.labels == sample.labels
    assert decoded.needs_review_by_target == {}  # records without per-target flags
    assert write_report  # imported for the slow test


@pytest.mark.unit
def test_records_sample_keeps_per_target_review_flags_every_record_has() -> None:
    sample = make_sample(6, seed=1)
    parsed = [MonitorRecord.model_validate_json(v) for v in records(sample)]
    for record in parsed:
        record.needs_review_by_target = {t: p < 0.7 for t, p in record.probabilities.items()}
    decoded = records_sample(parsed)
    assert decoded.needs_review_by_target == {
        t: [p < 0.7 for p in sample.probabilities[t]] for t in ("priority", "queue")
    }
    parsed[0].needs_review_by_target.pop("priority")  # a record of an older worker's kind
    assert set(records_sample(parsed).needs_review_by_target) == {"queue"}


@pytest.mark.slow
@pytest.mark.unit
def test_drift_report_command_on_a_records_file(
    reference_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``ticketflow drift report --input F --window N`` prints the table and writes HTML."""
    from ticketflow.cli import main

    path = tmp_path / "records.jsonl"
    lines = records(make_sample(300, seed=12, weights=SHIFTED_MIX))
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setenv("DRIFT_REFERENCE_DIR", str(reference_dir))
    out = tmp_path / "report.html"
    assert (
        main(["drift", "report", "--input", str(path), "--window", "200", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "200 records of model v1: drifted=True" in printed
    assert "label:queue" in printed and "DRIFT" in printed
    counters = _counters(out.read_text(encoding="utf-8"))
    assert any(c["label"].startswith("Data drift detected") for c in counters)
