"""Prometheus metrics of the drift monitor process, created against an injected registry:
the drift of the last window, and the workers' consumer-group lag read from the broker."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from ticketflow.adapters.kafka.lag import PartitionLag
from ticketflow.monitoring.drift import DriftResult


class MonitorMetrics:
    """What the monitor exports; every gauge describes the last evaluated window."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes...: the per-pod CPU and
        # memory panels (a custom registry does not get the default registry's collector).
        ProcessCollector(registry=r)
        self.records = Counter(
            "ticketflow_monitor_records", "Monitor records read from the worker.", registry=r
        )
        self.skipped = Counter(
            "ticketflow_monitor_records_skipped",
            "Monitor records not evaluated, by reason (undecodable, no_reference).",
            ["reason"],
            registry=r,
        )
        self.predictions = Counter(
            "ticketflow_monitor_predictions",
            "Predicted labels seen by the monitor, per target and label.",
            ["target", "label"],
            registry=r,
        )
        self.windows = Counter(
            "ticketflow_drift_windows",
            "Windows evaluated against the reference, by outcome (ok, drift).",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "ticketflow_drift_events",
            "Drift events published to the drift-events topic.",
            registry=r,
        )
        self.reports = Counter(
            "ticketflow_drift_reports", "Evidently HTML reports written.", registry=r
        )
        self.score = Gauge(
            "ticketflow_drift_score",
            "Drift score of the last window per feature (embedding method score or effect size).",
            ["feature", "method"],
            registry=r,
        )
        self.threshold = Gauge(
            "ticketflow_drift_threshold",
            "Score above which a feature counts as drifted.",
            ["feature"],
            registry=r,
        )
        self.p_value = Gauge(
            "ticketflow_drift_p_value",
            "p-value of the last window's test per tabular feature.",
            ["feature"],
            registry=r,
        )
        self.feature_drifted = Gauge(
            "ticketflow_drift_feature_drifted",
            "1 when the feature drifted in the last window.",
            ["feature"],
            registry=r,
        )
        self.detected = Gauge(
            "ticketflow_drift_detected", "1 when the last window drifted.", registry=r
        )
        self.share = Gauge(
            "ticketflow_drift_share_drifted_features",
            "Share of monitored features that drifted in the last window.",
            registry=r,
        )
        self.window_size = Gauge(
            "ticketflow_drift_window_size", "Tickets in the last evaluated window.", registry=r
        )
        self.label_share = Gauge(
            "ticketflow_drift_label_share",
            "Share of each predicted label in the last window.",
            ["target", "label"],
            registry=r,
        )
        self.compute_seconds = Gauge(
            "ticketflow_drift_compute_seconds",
            "Time to evaluate the last window.",
            registry=r,
        )
        self.last_window = Gauge(
            "ticketflow_drift_last_window_timestamp_seconds",
            "Unix time the last window was evaluated.",
            registry=r,
        )
        self.reference_info = Gauge(
            "ticketflow_drift_reference_info",
            "The reference set in use (value 1).",
            ["model_version", "reference_version"],
            registry=r,
        )
        # Read from the broker by this process (adapters/kafka/lag.py), so it outlives the workers.
        self.group_lag = Gauge(
            "ticketflow_consumergroup_lag",
            "Records of a topic partition not yet committed by the consumer group (log-end "
            "offset - committed offset), read from the broker.",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.group_lag_errors = Counter(
            "ticketflow_consumergroup_lag_read_errors",
            "Failed reads of the consumer-group lag (the last figures stay exported).",
            registry=r,
        )
        for outcome in ("ok", "drift"):
            self.windows.labels(outcome=outcome)
        for reason in ("undecodable", "no_reference"):
            self.skipped.labels(reason=reason)

    def set_reference(self, model_version: str, reference_version: str) -> None:
        self.reference_info.clear()
        self.reference_info.labels(
            model_version=model_version, reference_version=reference_version
        ).set(1)

    def set_group_lag(self, group: str, lags: Sequence[PartitionLag]) -> None:
        """One reading of ``group``'s lag; partitions of its topics that are gone lose their
        series."""
        fresh = {(group, lag.topic, str(lag.partition)): lag.lag for lag in lags}
        topics = {lag.topic for lag in lags}
        for labels in list(self._group_lag_series()):
            if labels[0] == group and labels[1] in topics and labels not in fresh:
                self.group_lag.remove(*labels)
        for (g, topic, partition), value in fresh.items():
            self.group_lag.labels(group=g, topic=topic, partition=partition).set(value)

    def _group_lag_series(self) -> list[tuple[str, str, str]]:
        return [
            (s.labels["group"], s.labels["topic"], s.labels["partition"])
            for family in self.group_lag.collect()
            for s in family.samples
        ]

    def observe(self, result: DriftResult, now: float) -> None:
        self.windows.labels(outcome="drift" if result.drifted else "ok").inc()
        for f in result.features:
            self.score.labels(feature=f.feature, method=f.method).set(f.score)
            self.threshold.labels(feature=f.feature).set(f.threshold)
            self.feature_drifted.labels(feature=f.feature).set(int(f.drifted))
            if f.p_value is not None:
                self.p_value.labels(feature=f.feature).set(f.p_value)
        self.detected.set(int(result.drifted))
        self.share.set(result.share_drifted)
        self.window_size.set(result.window_size)
        self.compute_seconds.set(result.seconds)
        self.last_window.set(now)
        self.label_share.clear()
        for target, shares in result.label_shares.items():
            for label, share in shares.items():
                self.label_share.labels(target=target, label=label).set(share)
