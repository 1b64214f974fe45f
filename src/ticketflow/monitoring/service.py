"""The drift monitor as a process, and the drift commands' work, built from settings.

The CLI only parses arguments and prints; what ``ticketflow monitor`` and ``ticketflow drift``
do lives here, next to the monitor it wires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ticketflow.adapters.kafka.clients import tail_values
from ticketflow.adapters.kafka.lag import GroupLagReader
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.config import Settings
from ticketflow.data.datasets import (
    DEFAULT_ENCODING,
    ColumnMapping,
    decode_error,
    read_table,
    rows_to_dicts,
    text_encoding,
)
from ticketflow.data.errors import InputError
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.serving import make_pipeline
from ticketflow.monitoring.drift import DriftConfig, DriftResult, MonitorSample, detect_drift
from ticketflow.monitoring.drift_metrics import MonitorMetrics
from ticketflow.monitoring.lag import start_lag_watch
from ticketflow.monitoring.monitor import (
    DriftMonitor,
    install_stop_handlers,
    reference_loader,
    run_monitor_loop,
)
from ticketflow.monitoring.reference import load_reference, write_sample_reference
from ticketflow.monitoring.report import ReportLimiter, report_path, write_report
from ticketflow.monitoring.sample import pipeline_sample, records_sample
from ticketflow.runtime.loading import serving_encoders
from ticketflow.schemas import MonitorRecord, Ticket

logger = logging.getLogger(__name__)


def drift_config(settings: Settings) -> DriftConfig:
    return DriftConfig(
        embedding_method=settings.drift_embedding_method,
        embedding_threshold=settings.drift_embedding_threshold,
        p_value=settings.drift_p_value,
        share_threshold=settings.drift_share_threshold,
    )


def run_monitor(settings: Settings, *, create_missing_topics: bool = True) -> None:
    """Consume the monitor topic until SIGTERM/SIGINT: windows, drift checks, events, reports."""
    from prometheus_client import start_http_server

    config = settings.kafka_client_config()
    if create_missing_topics:
        create_topics(
            config,
            [settings.kafka_topic_monitor, settings.kafka_topic_drift],
            partitions=settings.kafka_topic_partitions,
            replication=settings.kafka_topic_replication,
        )
    import evidently.metrics.embeddings  # noqa: F401  (slow first import: not on the first window)

    metrics = MonitorMetrics()
    start_http_server(
        settings.monitor_metrics_port, addr=settings.metrics_bind, registry=metrics.registry
    )
    stop = threading.Event()
    install_stop_handlers(stop)
    # The workers' consumer-group lag, from the broker: it stays visible when they are gone.
    group = settings.worker_app_id  # the Faust app id is the workers' consumer group
    lag_watch = start_lag_watch(
        GroupLagReader(config, group=group, topic=settings.kafka_topic_tickets),
        lambda lags: metrics.set_group_lag(group, lags),
        interval_s=settings.lag_interval_s,
        stop=stop,
        on_error=lambda _exc: metrics.group_lag_errors.inc(),
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidently-report") as reporter:
        monitor = DriftMonitor(
            references=reference_loader(settings.drift_reference_dir),
            metrics=metrics,
            publish=lambda key, value: None,  # replaced by the loop's producer
            config=drift_config(settings),
            window_size=settings.drift_window_size,
            window_seconds=settings.drift_window_seconds,
            min_window=settings.drift_min_window,
            report_dir=settings.drift_report_dir,
            report_limiter=ReportLimiter(settings.drift_report_min_interval_s),
            reporter=reporter,
        )
        logger.info(
            "monitor: %s -> windows of %d tickets / %.0fs -> %s; metrics on :%d",
            settings.kafka_topic_monitor,
            settings.drift_window_size,
            settings.drift_window_seconds,
            settings.kafka_topic_drift,
            settings.monitor_metrics_port,
        )
        run_monitor_loop(
            monitor,
            config,
            group_id=settings.monitor_app_id,
            topic=settings.kafka_topic_monitor,
            drift_topic=settings.kafka_topic_drift,
            stop=stop,
        )
    # Let the lag thread finish its read (stop is set) before the interpreter exits: a Kafka
    # client torn down during finalization while it works can crash the process.
    lag_watch.join(timeout=15)


@dataclass(frozen=True)
class ReferenceBuilt:
    model_version: str
    tickets: int
    path: Path


def build_reference(
    settings: Settings,
    data: Path,
    *,
    mapping: ColumnMapping,
    version: str | None = None,
    limit: int | None = None,
    seed: int = 42,
    encoding: str = DEFAULT_ENCODING,
) -> ReferenceBuilt:
    """The reference set of a model from a ticket file, labelled exactly as the worker does
    (the worker's encoders and pipeline: a cascade's reference is its static vectors)."""
    tickets = read_tickets(settings, data, mapping=mapping, limit=limit, encoding=encoding)
    labelled = label_tickets(settings, tickets, version=version)
    path = write_sample_reference(
        settings.drift_reference_dir,
        model_version=labelled.model_version,
        sample=labelled.sample,
        sample_size=settings.drift_reference_size,
        seed=seed,
    )
    return ReferenceBuilt(labelled.model_version, len(tickets), path)


def read_tickets(
    settings: Settings,
    data: Path,
    *,
    mapping: ColumnMapping,
    limit: int | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> list[Ticket]:
    """The valid tickets of a ticket file's first ``limit`` rows (invalid rows left out, as
    the worker would dead-letter them); ``InputError`` when it is unreadable or holds none."""
    frame = read_table(data, encoding=encoding)
    if limit is not None:
        frame = frame.head(limit)
    tickets = []
    for row in rows_to_dicts(frame, mapping, id_prefix=data.stem):
        try:
            tickets.append(Ticket.model_validate(row, context={"limits": settings.field_limits}))
        except ValidationError:
            continue
    if not tickets:
        raise InputError(f"{data}: no valid tickets")
    return tickets


@dataclass(frozen=True)
class Labelled:
    model_version: str
    sample: MonitorSample


def label_tickets(
    settings: Settings, tickets: Sequence[Ticket], *, version: str | None
) -> Labelled:
    """``tickets`` labelled by ``version`` (default MODEL_VERSION, else current) exactly as
    the worker labels them, as the monitor's columns."""
    model = ModelRegistry(settings.model_registry_dir).load(version or settings.model_version)
    pipeline = make_pipeline(serving_encoders(settings, model.metadata, text_cache=False), model)
    sample = pipeline_sample(pipeline, tickets, review=settings.review_policy())
    return Labelled(model.metadata.version, sample)


# The field only the worker's monitor records carry: a file with it is records, not tickets.
_RECORD_FIELD = "vector_f16_b64"


def holds_monitor_records(path: Path, *, encoding: str = DEFAULT_ENCODING) -> bool:
    """Whether ``path`` is a JSONL file of monitor records (its first record carries
    ``vector_f16_b64``) rather than a ticket file; decided by content, not by name."""
    if path.suffix.lower() not in (".jsonl", ".ndjson") or not path.is_file():
        return False
    try:
        with path.open(encoding=text_encoding(encoding)) as fh:
            first = next((line for line in fh if line.strip()), "")
        item = json.loads(first) if first else None
    except (ValueError, OSError):  # not JSON, not text: the ticket reader says what is wrong
        return False
    return isinstance(item, dict) and _RECORD_FIELD in item


def read_monitor_records(path: Path, *, encoding: str = DEFAULT_ENCODING) -> list[MonitorRecord]:
    """The monitor records of a JSONL file; ``InputError`` names the first bad line."""
    records = []
    try:
        with path.open(encoding=text_encoding(encoding)) as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(MonitorRecord.model_validate_json(line))
                except ValidationError as exc:
                    first = exc.errors(include_url=False)[0]
                    where = ".".join(str(part) for part in first["loc"])
                    raise InputError(
                        f"{path}:{line_no}: not a monitor record: {where}: {first['msg']}"
                    ) from None
    except UnicodeDecodeError as exc:
        raise decode_error(path, encoding, exc) from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return records


def latest_monitor_records(settings: Settings, count: int) -> list[MonitorRecord]:
    """The last ``count`` records of the monitor topic (across partitions, oldest first)."""
    values = tail_values(
        settings.kafka_client_config(),
        settings.kafka_topic_monitor,
        count,
        group_id=f"{settings.monitor_app_id}-report",
    )
    records = [MonitorRecord.model_validate_json(value or b"") for value in values]
    records.sort(key=lambda r: r.processed_time)
    return records[-count:]


@dataclass(frozen=True)
class DriftReport:
    model_version: str
    records: int
    result: DriftResult
    path: Path


def drift_report(
    settings: Settings, records: Sequence[MonitorRecord], *, out: Path | None = None
) -> DriftReport:
    """Drift of the newest model's ``records`` against its reference, with an HTML report."""
    if not records:
        raise ValueError("no monitor records to report on")
    version = records[-1].model_version
    mine = [r for r in records if r.model_version == version]
    return sample_report(settings, Labelled(version, records_sample(mine)), len(mine), out=out)


def sample_report(
    settings: Settings, labelled: Labelled, count: int, *, out: Path | None = None
) -> DriftReport:
    """Drift of a labelled sample (monitor records, or tickets labelled by
    :func:`label_tickets`) against its model's reference, with an HTML report."""
    version, current = labelled.model_version, labelled.sample
    reference = load_reference(settings.drift_reference_dir, version)
    config = drift_config(settings)
    result = detect_drift(reference.sample, current, config)
    path = write_report(
        reference.sample,
        current,
        out or report_path(settings.drift_report_dir, version),
        model_version=version,
        reference_version=reference.reference_version,
        embedding_threshold=config.threshold,
    )
    return DriftReport(version, count, result, path)
