"""Prometheus metrics of the drift monitor, created against an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ticketflow.monitoring.drift import DriftResult


class MonitorMetrics:
    """What the monitor exports; every gauge describes the last evaluated window."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        for outcome in ("ok", "drift"):
            self.windows.labels(outcome=outcome)
        for reason in ("undecodable", "no_reference"):
            self.skipped.labels(reason=reason)

    def set_reference(self, model_version: str, reference_version: str) -> None:
        self.reference_info.clear()
        self.reference_info.labels(
            model_version=model_version, reference_version=reference_version
        ).set(1)

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
