"""The drift monitor: a small Kafka consumer loop (:mod:`ticketflow.adapters.kafka.loop`), off
the worker's hot path.

``ticket-monitoring`` records → tumbling windows (per model version) → pure drift check
(:mod:`ticketflow.monitoring.drift`) → Prometheus gauges, plus a ``drift-events`` record and (rate
limited, on a background thread) an Evidently HTML report when a window drifted.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ticketflow.adapters.kafka.loop import TopicPublisher, consume_until_stopped
from ticketflow.monitoring.drift import DriftConfig, DriftResult, MonitorSample, detect_drift
from ticketflow.monitoring.drift_metrics import MonitorMetrics
from ticketflow.monitoring.reference import Reference, ReferenceError, load_reference
from ticketflow.monitoring.report import ReportLimiter, report_path, write_report
from ticketflow.monitoring.sample import records_sample
from ticketflow.monitoring.windows import TumblingWindows, Window
from ticketflow.schemas import DriftEvent, FeatureDrift, MonitorRecord

logger = logging.getLogger(__name__)

Publish = Callable[[bytes, bytes], None]


def drift_event(
    result: DriftResult,
    reference: Reference,
    window: Window[MonitorRecord],
    *,
    report: Path | None,
) -> DriftEvent:
    times = [r.processed_time for r in window.items]
    return DriftEvent(
        model_version=reference.model_version,
        reference_version=reference.reference_version,
        window_start=min(times),
        window_end=max(times),
        window_size=result.window_size,
        drifted=result.drifted,
        share_drifted=result.share_drifted,
        # FeatureResult holds exactly the contract's fields.
        features=[FeatureDrift.model_validate(asdict(f)) for f in result.features],
        report_path=str(report) if report else None,
        detected_at=datetime.now(UTC),
    )


@dataclass
class DriftMonitor:
    """Framework-free core of the loop: feed it raw record values and the clock."""

    references: Callable[[str], Reference]
    metrics: MonitorMetrics
    publish: Publish
    config: DriftConfig = field(default_factory=DriftConfig)
    window_size: int = 500
    window_seconds: float = 300.0
    min_window: int = 50
    report_dir: Path | None = None
    report_limiter: ReportLimiter = field(default_factory=lambda: ReportLimiter(900.0))
    reporter: ThreadPoolExecutor | None = None
    # A version without a reference is looked up again after this long: the fix the skip's
    # log line and alert point to (``ticketflow drift reference --version``) takes effect
    # without restarting the monitor.
    reference_retry_s: float = 60.0
    _windows: dict[str, TumblingWindows[MonitorRecord]] = field(default_factory=dict)
    _loaded: dict[str, Reference | None] = field(default_factory=dict)
    _missing_since: dict[str, float] = field(default_factory=dict)  # version -> clock of lookup
    _report_future: Future[Path] | None = None
    results: list[DriftResult] = field(default_factory=list)  # for tests / the last window

    def handle(self, value: bytes | None, now: float) -> list[DriftEvent]:
        self.metrics.records.inc()
        try:
            record = MonitorRecord.model_validate_json(value or b"")
        except ValidationError as exc:
            self.metrics.skipped.labels(reason="undecodable").inc()
            logger.warning("undecodable monitor record: %s", str(exc)[:200])
            return []
        if self._reference(record.model_version, now) is None:
            self.metrics.skipped.labels(reason="no_reference").inc()
            return []
        for target, label in record.labels.items():
            self.metrics.predictions.labels(target=target, label=label).inc()
        windows = self._windows.setdefault(
            record.model_version, TumblingWindows(self.window_size, self.window_seconds)
        )
        return self._evaluate(record.model_version, windows.add(record, now), now)

    def tick(self, now: float) -> list[DriftEvent]:
        events: list[DriftEvent] = []
        for version, windows in self._windows.items():
            closed = windows.tick(now)
            if closed is not None:
                events += self._evaluate(version, [closed], now)
        return events

    def _reference(self, version: str, now: float) -> Reference | None:
        missing_since = self._missing_since.get(version)
        retry = missing_since is not None and now - missing_since >= self.reference_retry_s
        if version not in self._loaded or retry:
            try:
                reference: Reference | None = self.references(version)
            except ReferenceError as exc:
                if missing_since is None:  # once per version, not once per retry
                    logger.error("%s; records of this model are not monitored", exc)
                reference = None
            self._loaded[version] = reference
            if reference is None:
                self._missing_since[version] = now
            else:
                self._missing_since.pop(version, None)
                if missing_since is not None:
                    logger.info("reference %s found: monitoring resumes", version)
        return self._loaded[version]

    def _evaluate(
        self, version: str, closed: list[Window[MonitorRecord]], now: float
    ) -> list[DriftEvent]:
        reference = self._loaded.get(version)
        events: list[DriftEvent] = []
        for window in closed:
            if reference is None or len(window.items) < self.min_window:
                logger.info(
                    "window of %s, %d records, too small; not evaluated", version, len(window.items)
                )
                continue
            current = records_sample(window.items)
            result = detect_drift(reference.sample, current, self.config)
            self.results.append(result)
            del self.results[:-100]
            self.metrics.observe(result, time.time())
            # Like every gauge, the reference in use describes the last evaluated window: set
            # per window, it follows a rollback to a version whose reference is already loaded.
            self.metrics.set_reference(version, reference.reference_version)
            logger.info(
                "window of %s, %d records (%s): drifted=%s share=%.2f embedding %s=%.4f in %.2fs",
                version,
                result.window_size,
                window.reason,
                result.drifted,
                result.share_drifted,
                result.embedding.method,
                result.embedding.score,
                result.seconds,
            )
            if not result.drifted:
                continue
            report = self._schedule_report(reference, current, now)
            event = drift_event(result, reference, window, report=report)
            self.publish(version.encode("utf-8"), event.model_dump_json().encode("utf-8"))
            self.metrics.events.inc()
            events.append(event)
        return events

    def _schedule_report(
        self, reference: Reference, current: MonitorSample, now: float
    ) -> Path | None:
        if self.report_dir is None or self.reporter is None:
            return None
        if self._report_future is not None and not self._report_future.done():
            return None
        if not self.report_limiter.allow(now):
            return None
        path = report_path(self.report_dir, reference.model_version)

        def run() -> Path:
            written = write_report(
                reference.sample,
                current,
                path,
                model_version=reference.model_version,
                reference_version=reference.reference_version,
                embedding_threshold=self.config.threshold,
            )
            self.metrics.reports.inc()
            return written

        self._report_future = self.reporter.submit(run)
        self._report_future.add_done_callback(_log_failure)
        return path


def _log_failure(future: Future[Path]) -> None:
    exc = future.exception()
    if exc is not None:
        logger.error("evidently report failed: %r", exc)


def run_monitor_loop(
    monitor: DriftMonitor,
    client_config: Mapping[str, str],
    *,
    group_id: str,
    topic: str,
    drift_topic: str,
    stop: threading.Event,
    poll_batch: int = 500,
) -> None:
    """Consume ``topic`` until ``stop`` is set; drift events go to ``drift_topic``.
    Offsets auto-commit: drift is a sample."""
    publisher = TopicPublisher(client_config, drift_topic)
    monitor.publish = publisher
    try:
        consume_until_stopped(
            client_config,
            topic,
            group_id=group_id,
            handle=monitor.handle,
            tick=monitor.tick,
            stop=stop,
            poll_batch=poll_batch,
        )
    finally:
        publisher.close(10.0)


def install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        logger.info("signal %d: stopping the monitor", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def reference_loader(directory: Path) -> Callable[[str], Reference]:
    return lambda version: load_reference(directory, version)
