"""Prometheus metrics of the worker, all created in one place against an injected registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from ticketflow.schemas import IncidentEvent, IncidentStatus, LabeledTicket

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
INCIDENT_SIZE_BUCKETS = (5, 10, 20, 50, 100, 200, 500, 1000)
# From the model's labelling to a person's first answer: a minute to a week (the desk's pace).
ANSWER_BUCKETS = (
    60.0,
    300.0,
    900.0,
    3_600.0,
    4 * 3_600.0,
    12 * 3_600.0,
    86_400.0,
    3 * 86_400.0,
    7 * 86_400.0,
)
STAGES = ("wait", "decode", "embed", "classify", "outputs", "vector_write", "produce")
# ticketflow_corrections_total's label values come from agents' feedback, which any client can
# send: past this many distinct class names per target, further new names count as OTHER_LABEL,
# so a typo-prone help desk cannot grow the series without bound (the model's classes, the
# expected values, are tens at most).
MAX_CLASS_NAMES = 100
OTHER_LABEL = "_other"
# set_model creates every (predicted, corrected) series of a target at 0 up to this many
# classes (32² = 1,024 series): increase() cannot see the first count of a series born with
# it, which would hide most corrections of a rarely corrected class.
PREINIT_MAX_CLASSES = 32


class WorkerMetrics:
    """Everything an operator watches on a labelling worker."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes...: the dashboards' per-pod
        # CPU and memory panels (an injected registry has no default collectors).
        ProcessCollector(registry=r)
        self.consumed = Counter(
            "ticketflow_tickets_consumed", "Events read from the tickets topic.", registry=r
        )
        self.labeled = Counter(
            "ticketflow_tickets_labeled", "Tickets classified and published.", registry=r
        )
        self.dead_lettered = Counter(
            "ticketflow_tickets_dead_lettered",
            "Events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        # Review: per target (a label to check) and per ticket (held instead of routed).
        self.needs_review = Counter(
            "ticketflow_tickets_needs_review",
            "Labelled tickets whose prediction of this target was below its review cut.",
            ["target"],
            registry=r,
        )
        self.held_for_review = Counter(
            "ticketflow_tickets_held_for_review",
            "Labelled tickets with needs_review: a target of the review gate was below its "
            "cut, so the ticket waits for a person instead of being routed.",
            registry=r,
        )
        self.batch_size = Histogram(
            "ticketflow_batch_size", "Events per micro-batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "ticketflow_stage_duration_seconds",
            "Time per micro-batch spent in each stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "ticketflow_end_to_end_latency_seconds",
            "From the event's Kafka timestamp to its label being published.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "ticketflow_consumer_lag",
            "Messages behind the high watermark, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.vector_store_errors = Counter(
            "ticketflow_vector_store_errors",
            "Failed vector-store calls, writes and similarity queries (the batch is retried, never "
            "dropped).",
            registry=r,
        )
        self.vector_store_up = Gauge(
            "ticketflow_vector_store_up",
            "1 when the last vector-store call (write or similarity query) succeeded.",
            registry=r,
        )
        self.model_info = Gauge(
            "ticketflow_model_info",
            "The model being served (value 1).",
            ["version", "embedding_model"],
            registry=r,
        )
        self.ready = Gauge(
            "ticketflow_worker_ready", "1 once the model is loaded and consuming.", registry=r
        )
        # speed: the cascade and the text cache (ticketflow.models.cascade, .text_cache)
        self.pipeline_rows = Counter(
            "ticketflow_pipeline_rows",
            "Tickets by how they were embedded: escalated to the transformer by the cascade, "
            "answered by the text cache (cache_hit) or not (cache_miss).",
            ["kind"],
            registry=r,
        )
        # feedback / retraining / hot reload
        self.feedback_applied = Counter(
            "ticketflow_feedback_applied",
            "Label corrections merged into the vector store.",
            registry=r,
        )
        # Live accuracy: one count per target label a person gave a ticket the model labelled,
        # also when it agrees with the model (a confirmation): the correction rate is
        # changed="true" over all, which PromQL cannot get from comparing two labels.
        self.corrections = Counter(
            "ticketflow_corrections",
            "Labels people gave tickets the model labelled, per target: the model's label "
            "(predicted), the person's (corrected) and whether they differ (changed).",
            ["target", "predicted", "corrected", "changed"],
            registry=r,
        )
        self.review_answer_seconds = Histogram(
            "ticketflow_review_answer_seconds",
            "From the model labelling a ticket (processed_at) to the first answer a person "
            "gave it (the feedback's corrected_at), for tickets whose labels were the model's.",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self._class_names: dict[str, set[str]] = {}  # seen per target, for the cap
        self._model_classes: dict[str, set[str]] = {}  # the served model's: never capped
        self.model_reloads = Counter(
            "ticketflow_model_reloads",
            "Announced models loaded for a hot swap (ok) or refused by verification (refused).",
            ["result"],
            registry=r,
        )
        self.model_swap_seconds = Gauge(
            "ticketflow_model_swap_delay_seconds",
            "Last hot swap: from receiving the announcement to serving the new model.",
            registry=r,
        )
        # emerging incidents (ticketflow.monitoring.incidents)
        self.incidents_open = Gauge(
            "ticketflow_incidents_open",
            "Emerging incidents open on this worker (bursts of close tickets).",
            registry=r,
        )
        self.incidents_opened = Counter(
            "ticketflow_incidents_opened", "Emerging incidents opened.", registry=r
        )
        self.incident_size = Histogram(
            "ticketflow_incident_size",
            "Members of each incident when it closed.",
            buckets=INCIDENT_SIZE_BUCKETS,
            registry=r,
        )
        self.incident_largest = Gauge(
            "ticketflow_incident_largest_open_size",
            "Members of the largest open incident (0 when none is open).",
            registry=r,
        )
        self._incident_sizes: dict[str, int] = {}
        for result in ("ok", "refused"):
            self.model_reloads.labels(result=result)
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)

    def count_review(self, labeled: Sequence[LabeledTicket]) -> None:
        """Count the published tickets held for review, and per target the labels to check
        (every target seen gets its series, at 0 when none needed review)."""
        self.held_for_review.inc(sum(1 for t in labeled if t.needs_review))
        per_target: dict[str, int] = {}
        for ticket in labeled:
            for target, prediction in ticket.predictions.items():
                per_target[target] = per_target.get(target, 0) + int(prediction.needs_review)
        for target, count in per_target.items():
            self.needs_review.labels(target=target).inc(count)

    def count_correction(self, target: str, predicted: str, corrected: str) -> None:
        """Count a person's label ``corrected`` of ``target`` on a ticket the model had
        labelled ``predicted`` (equal: a confirmation)."""
        changed = "true" if predicted != corrected else "false"
        self.corrections.labels(
            target=target,
            predicted=self._class_name(target, predicted),
            corrected=self._class_name(target, corrected),
            changed=changed,
        ).inc()

    def _class_name(self, target: str, name: str) -> str:
        seen = self._class_names.setdefault(target, set())
        if name in seen or name in self._model_classes.get(target, ()):
            return name
        if len(seen) >= MAX_CLASS_NAMES:
            return OTHER_LABEL
        seen.add(name)
        return name

    def set_model(
        self,
        version: str,
        embedding_model: str,
        classes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """The model now served; ``classes``: its labels per target (``ModelMetadata.labels``),
        whose correction series are created at 0 (targets of at most PREINIT_MAX_CLASSES)."""
        self.model_info.clear()
        self.model_info.labels(version=version, embedding_model=embedding_model).set(1)
        for target, names in (classes or {}).items():
            self._model_classes.setdefault(target, set()).update(names)
            if len(names) > PREINIT_MAX_CLASSES:
                continue
            for predicted in names:
                for corrected in names:
                    changed = "true" if predicted != corrected else "false"
                    self.corrections.labels(
                        target=target, predicted=predicted, corrected=corrected, changed=changed
                    )

    def count_incidents(self, events: Sequence[IncidentEvent], open_now: int) -> None:
        """Record a batch's incident events; ``open_now``: incidents open after it."""
        for event in events:
            if event.status is IncidentStatus.OPEN:
                self.incidents_opened.inc()
            if event.status is IncidentStatus.CLOSED:
                if event.merged_into is None:  # a merged one's members count in the other
                    self.incident_size.observe(event.size)
                self._incident_sizes.pop(event.incident_id, None)
            else:
                self._incident_sizes[event.incident_id] = event.size
        self.incidents_open.set(open_now)
        self.incident_largest.set(max(self._incident_sizes.values(), default=0))
