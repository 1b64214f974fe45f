"""Settings, read from the environment and ``.env``, grouped by concern.

Only entry points (the CLI, the worker, the Faust app module) build a ``Settings``; library
code receives plain arguments or one group. Every field is an environment variable of the
same name in upper case (``kafka_topic_tickets`` -> ``KAFKA_TOPIC_TICKETS``): those names are
a public interface and do not change with the grouping. ``docs/configuration.md`` is
generated from this module by :mod:`ticketflow.devtools.config_docs` (a test keeps it current).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ticketflow.adapters.kafka.config import KafkaConnection
from ticketflow.models.review import (
    DEFAULT_REVIEW_PRECISION,
    DEFAULT_REVIEW_THRESHOLD,
    ReviewPolicy,
)
from ticketflow.schemas import FieldLimits

_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")
_CONFIG = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class KafkaSettings(BaseSettings):
    """Kafka: the cluster, its security and the topics."""

    model_config = _CONFIG

    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Use this cluster; unset = the local jar-based broker."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM).")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client key (mTLS).")
    kafka_topic_tickets: str = "tickets"
    kafka_topic_labeled: str = "labeled-tickets"
    kafka_topic_dlq: str = "tickets-dlq"
    kafka_topic_monitor: str = Field(
        default="ticket-monitoring", description="Internal topic feeding the drift monitor."
    )
    monitor_enabled: bool = Field(default=True, description="Publish monitor records.")
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_topic_replication: int = 1
    kafka_max_message_bytes: int = 1_000_000
    kafka_topic_feedback: str = Field(
        default="ticket-feedback", description="Label corrections by agents."
    )
    kafka_topic_model_updates: str = Field(
        default="model-updates", description="Promotions and rollbacks, read by every worker."
    )
    kafka_topic_drift: str = Field(
        default="drift-events", description="One record per window in which drift was detected."
    )
    kafka_topic_incidents: str = Field(
        default="ticket-incidents",
        description="Emerging incidents (`IncidentEvent`), keyed by incident id; compacted, "
        "one partition.",
    )


class LocalBrokerSettings(BaseSettings):
    """The local jar-based broker (``ticketflow broker``; only when KAFKA_BOOTSTRAP_SERVERS is
    unset) and local state."""

    model_config = _CONFIG

    local_kafka_port: int = 9092
    local_kafka_controller_port: int = 9093
    local_kafka_version: str = "4.1.2"
    local_kafka_heap: str = "512m"
    state_dir: Path = Path(".state")
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "ticketflow")


class WorkerSettings(BaseSettings):
    """The labelling worker: batching, commits, its web port, review and dead letters."""

    model_config = _CONFIG

    worker_app_id: str = "ticketflow-worker"
    worker_batch_max: int = 64
    worker_batch_within_s: float = Field(
        default=0.05,
        gt=0,
        description="Longest wait for a micro-batch to fill; under load batches fill anyway.",
    )
    worker_inflight_batches: int = Field(
        default=2,
        ge=1,
        description="Micro-batches in flight: the next one is labelled (its Python half "
        "while the last one's transformer half runs) while the last is stored and published; "
        "1 = one at a time.",
    )
    worker_malloc_arenas: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas of the `ticketflow worker` process (what "
        "`MALLOC_ARENA_MAX` sets, which wins when present): fewer arenas, less memory held "
        "apart by its threads; 0 = glibc's default (8 per core).",
    )
    metrics_port: int = Field(
        default=6066, description="Worker web port: /metrics, /healthz, /readyz."
    )
    metrics_bind: str = "0.0.0.0"
    worker_commit_every_batch: bool = Field(
        default=True,
        description="Commit a batch's offsets as soon as its outputs are acknowledged, so a "
        "crash replays at most the batches in flight; false = only every "
        "`WORKER_COMMIT_INTERVAL_S`.",
    )
    worker_commit_interval_s: float = 2.8
    worker_processing_guarantee: Literal["at_least_once"] = Field(
        default="at_least_once",
        description="At-least-once: every ticket is labelled or dead-lettered, a crash may "
        "label some twice; consumers de-duplicate by `ticket_id`, the record key.",
    )
    lag_interval_s: float = 5.0
    review_threshold: float = Field(default=DEFAULT_REVIEW_THRESHOLD, ge=0, le=1)
    review_precision: float = Field(
        default=DEFAULT_REVIEW_PRECISION,
        gt=0,
        le=1,
        description="ticketflow train: per-target review thresholds aim at this precision.",
    )
    review_precision_by_target: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        description="ticketflow train: a precision of its own for some targets, as a JSON "
        'object: `REVIEW_PRECISION_BY_TARGET={"queue": 0.9, "priority": 0.8}` (there is no '
        "`REVIEW_PRECISION_<TARGET>` variable). Targets not named use `REVIEW_PRECISION`; "
        "a named target the model does not learn is ignored (logged). Recorded in the model "
        "(`review_precisions`).",
    )
    review_gate: list[str] = Field(
        default_factory=list,
        description="ticketflow train: the targets whose review holds a ticket, as a JSON "
        'list: `REVIEW_GATE=["queue"]`; empty = the first trained target (the one tickets '
        "are routed by). The ticket's top-level `needs_review` is true when one of them is "
        "below its cut; every prediction still carries its own `needs_review`. Stored in the "
        "model: the worker gates with the gate of the model it serves. Naming a target the "
        "model does not learn fails the training.",
    )
    review_audit_share: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="The worker (and backfill) also holds this share of the tickets the gate "
        "is sure of, drawn by a hash of the ticket id, and marks them `audit`: people's "
        "answers then include a sample of what the model routes alone, and ticketflow retrain "
        "checks that a challenger is no worse on it (docs/learning.md). 0: none.",
    )
    dlq_keep_bytes: int = 65_536
    similar_k: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Each labelled ticket carries its k nearest earlier tickets (`similar`) "
        "and `possible_duplicate_of`: one vector-store query per micro-batch; 0 = off.",
    )
    duplicate_max_distance: float = Field(
        default=0.002,
        ge=0,
        le=2,
        description="With `SIMILAR_K`: the nearest ticket is `possible_duplicate_of` when its "
        "cosine distance is below this.",
    )
    feedback_enabled: bool = Field(default=True, description="The worker applies feedback.")
    # Emerging incidents (docs/incidents.md says how to choose each on one's own tickets).
    incidents_enabled: bool = Field(
        default=True,
        description="The worker groups bursts of close tickets into incidents "
        "(`KAFKA_TOPIC_INCIDENTS`, `incident_id` on labelled tickets). The detector runs on "
        "its own thread beside the vector write; what it costs through Kafka is at the 10% "
        "budget of issue #31, not clearly within it (bench.pipeline --incidents, measured "
        "in docs/incidents.md, Cost).",
    )
    incident_window_s: float = Field(
        default=600.0,
        gt=0,
        description="Event time within which close tickets count as one burst: about how "
        "fast a problem's tickets come in (10 min: 15 tickets about one outage).",
    )
    incident_min_size: int = Field(
        default=5, ge=2, description="Close tickets in the window that open an incident."
    )
    incident_max_distance: float = Field(
        default=0.3,
        gt=0,
        le=2,
        description="Cosine distance under which two tickets are about the same problem, in "
        "the detector's space: the stored vectors joined with the words' vectors by "
        "`INCIDENT_TEXT_WEIGHT` (bench.incidents, 2026-12-07: 0.3 for the static encoder's "
        "vectors alone; with a text weight and this left unset, 0.52).",
    )
    incident_quiet_s: float = Field(
        default=1800.0, gt=0, description="An incident with no new member this long closes."
    )
    incident_baseline_ratio: float = Field(
        default=5.0,
        ge=0,
        description="Times more close tickets than that kind of ticket usually has (the "
        "history's rate) before a group is an incident.",
    )
    incident_text_weight: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of the incident detector's closeness from the tickets' words "
        "(hashed TF-IDF of the model text), the rest from the stored vectors; needs "
        "`CHROMA_DOCUMENT` other than none; also turns on the merge of concurrent incidents "
        "sharing a rare word. 0.3 found the benchmark's English bursts by their 5th-9th "
        "ticket instead of their 9th or not at all, but cost 5-20% of throughput through "
        "Kafka (on/off 0.945 and 0.805; bench.pipeline --incidents, 2026-12-07, "
        "docs/incidents.md), so it is off by default.",
    )
    model_reload_enabled: bool = Field(
        default=True, description="Workers hot-reload promoted models (ignored with MODEL_VERSION)."
    )
    model_reload_poll_s: float = Field(
        default=60.0, description="Also check the registry's current pointer this often; 0 = off."
    )
    log_level: str = "INFO"

    @field_validator("worker_processing_guarantee", mode="before")
    @classmethod
    def _refuse_exactly_once(cls, value: object) -> object:
        # A knob that promises exactly-once and delivers duplicates is worse than none.
        if isinstance(value, str) and value.strip().lower().replace("-", "_") == "exactly_once":
            raise ValueError(
                "exactly_once was removed: faust-streaming's Kafka transactions do not cover "
                "the consumed offsets, so a read_committed reader still saw duplicates after a "
                "crash (docs/guarantees.md). The worker is at-least-once: unset "
                "WORKER_PROCESSING_GUARANTEE (or set at_least_once) and de-duplicate "
                "labeled-tickets by ticket_id, the record key (the ChromaDB write is already "
                "an upsert by ticket_id)"
            )
        return value


class InputSettings(BaseSettings):
    """Limits on incoming tickets: a ticket over a limit is refused and dead-lettered."""

    model_config = _CONFIG

    max_subject_chars: int = 1_000
    max_body_chars: int = 20_000
    max_tags: int = 50
    max_tag_chars: int = 100

    @property
    def field_limits(self) -> FieldLimits:
        return FieldLimits(
            max_subject_chars=self.max_subject_chars,
            max_body_chars=self.max_body_chars,
            max_tags=self.max_tags,
            max_tag_chars=self.max_tag_chars,
        )


class ModelSettings(BaseSettings):
    """Encoders, the cascade, the text cache and the model registry."""

    model_config = _CONFIG

    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_device: str = Field(
        default="cpu", description="Where the encoders run: cpu, cuda, cuda:N or mps."
    )
    embedding_batch_size: int = 16
    torch_threads: int | None = Field(
        default=None,
        description="Intra-op threads of the encoder (torch or onnxruntime); None = all cores.",
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="onnx-int8",
        description="How training embeds; a worker serves with the model's own backend.",
    )
    embedding_max_tokens: int | None = Field(
        default=128,
        description="Cut texts at this many tokens when training; 0 = the model's own.",
    )
    cascade: bool = Field(
        default=True, description="Train a static first stage that skips the transformer."
    )
    cascade_agreement: float = Field(
        default=0.97,
        description="Out-of-fold share of kept tickets where the first stage must match stage 2.",
    )
    cascade_escalate: Literal["gate", "all"] = Field(
        default="gate",
        description="Whose unsure first-stage answer escalates: the review gate's or all targets'.",
    )
    text_cache_size: int = Field(
        default=10_000, description="Embeddings kept by model text (LRU); 0 = off."
    )
    max_text_chars: int = 1_000
    model_registry_dir: Path = Path("models/registry")
    model_version: str | None = Field(
        default=None, description="Serve this version; unset = current."
    )

    @field_validator("embedding_device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        # Checked here, not 30 s later when torch or onnxruntime first meets the name.
        if not _DEVICE.fullmatch(value):
            raise ValueError("expected cpu, cuda, cuda:N or mps")
        return value


class VectorStoreSettings(BaseSettings):
    """ChromaDB: where the vectors and labels of every ticket are kept."""

    model_config = _CONFIG

    chroma_host: str | None = Field(default=None, description="Set = HttpClient; unset = embedded.")
    chroma_port: int = 8000
    chroma_path: Path = Path(".state/chroma")
    chroma_collection: str = "tickets"
    chroma_auth_token: SecretStr | None = Field(
        default=None, description="Bearer token for a ChromaDB server with token auth."
    )
    chroma_document: Literal["none", "redacted", "full"] = Field(
        default="redacted",
        description="Model text stored as the Chroma document: redacted (emails, phone and "
        "card-like numbers masked), full, or none (no retraining from the store).",
    )


class DriftSettings(BaseSettings):
    """The drift monitor (``ticketflow monitor``), reference sets and reports."""

    model_config = _CONFIG

    monitor_app_id: str = Field(
        default="ticketflow-monitor", description="Consumer group of the drift monitor."
    )
    monitor_metrics_port: int = Field(default=6067, description="Monitor /metrics port.")
    drift_window_size: int = Field(
        default=500, ge=1, description="A window closes after N tickets…"
    )
    drift_window_seconds: float = Field(default=300.0, description="…or T seconds.")
    drift_min_window: int = Field(default=50, description="Smaller windows are not evaluated.")
    drift_reference_dir: Path = Path("data/reference")
    drift_reference_size: int = Field(default=2000, description="Rows sampled into a reference.")
    drift_embedding_method: Literal["mmd", "model", "distance", "ratio"] = "mmd"
    drift_embedding_threshold: float | None = Field(
        default=None, description="None = Evidently's default for the method."
    )
    drift_p_value: float = 0.001
    drift_share_threshold: float = 0.5
    drift_report_dir: Path = Path("reports/evidently")
    drift_report_min_interval_s: float = 900.0


class RetrainSettings(BaseSettings):
    """``ticketflow retrain``: what a challenger learns from and when it is promoted."""

    model_config = _CONFIG

    retrain_use_predicted: bool = Field(
        default=True, description="Train on confident model labels next to human ones."
    )
    retrain_min_probability: float = Field(
        default=0.9, description="Model labels below this probability are not trained on."
    )
    retrain_holdout_fraction: float = Field(
        default=0.3, description="Share of human-labelled tickets held out for the comparison."
    )
    retrain_min_holdout: int = Field(
        default=20, description="Fewer held-out human labels: no comparison, no promotion."
    )
    retrain_margin: float = Field(
        default=0.01, description="Challenger macro-F1 must beat the champion by this much."
    )
    retrain_class_tolerance: float = Field(
        default=0.05, description="No class's F1 may drop by more than this."
    )
    retrain_min_class_support: int = Field(
        default=20,
        ge=0,
        description="A class's F1 drop blocks a promotion only when the evaluation set has at "
        "least this many of its tickets (0: every class is judged; below 20, one ticket moves "
        "a class's F1 by more than the tolerance).",
    )
    retrain_min_new_class_examples: int = Field(
        default=10,
        ge=1,
        description="A class the champion does not know is learned once people's labels name "
        "it this often; fewer: its tickets are left out of training, and the report says so.",
    )
    retrain_confidence: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="A challenger is promoted only when its gain is above 0 in at least this "
        "share of paired bootstrap resamples of the evaluation set, besides the margin (0: "
        "the margin alone decides; the share is in the report either way). Off by default: "
        "at 0.9 it kept out as many better challengers as worse ones (docs/learning.md).",
    )
    retrain_report_dir: Path = Path("reports/retrain")


class TrackingSettings(BaseSettings):
    """MLflow, as an option: train, retrain and experiments logged as runs (docs/mlflow.md).
    ticketflow's own registry stays the source of truth for the workers."""

    model_config = _CONFIG

    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking server (http://host:5000); unset = no MLflow logging.",
    )
    mlflow_experiment: str = Field(
        default="ticketflow", description="MLflow experiment the runs are logged in."
    )
    mlflow_model_name: str = Field(
        default="ticketflow",
        description="MLflow registered model; aliases champion/challenger follow promotions.",
    )


class ServeSettings(BaseSettings):
    """``ticketflow serve``: who may call the HTTP API and how much it takes at once."""

    model_config = _CONFIG

    serve_tokens_file: Path | None = Field(
        default=None,
        description="Bearer tokens of the HTTP API, one `name:token` or `name:sha256:<hex>` "
        "per line; unset = no tokens, and serve binds only to loopback.",
    )
    serve_metrics_public: bool = Field(
        default=False, description="Serve `/metrics` without a token (for Prometheus)."
    )
    serve_max_inflight: int = Field(
        default=32,
        ge=1,
        description="Requests to `/v1/*` handled at once; more are answered 503 at once.",
    )
    serve_session_secret_file: Path | None = Field(
        default=None,
        description="A file whose bytes sign the review desk's session cookies (at least 32); "
        "unset = a random secret per process, so a restart logs everyone out and replicas "
        "do not share sessions.",
    )
    serve_session_ttl_s: int = Field(
        default=12 * 3600, ge=60, description="How long a desk login lasts (seconds)."
    )
    serve_cookie_secure: bool = Field(
        default=False,
        description="Mark the desk's session cookie `Secure` (set it when the desk is served "
        "over HTTPS, e.g. behind a TLS ingress).",
    )
    serve_feedback_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long an answer on the desk waits for the broker's acknowledgement; "
        "past it the answer is refused (503) and never published later.",
    )
    review_order: Literal["margin", "margin-diverse", "oldest"] = Field(
        default="margin",
        description="The desk's default order: `margin` (most informative first: the smallest "
        "gap between the gate target's top two labels), `margin-diverse` (margin first, taking "
        "turns between the label pairs the model hesitates on) or `oldest` (first labelled "
        "first).",
    )
    review_queue_max_age_s: float = Field(
        default=2.0,
        ge=0,
        description="How old the desk's snapshot of held tickets may get before it is read "
        "again from the vector store (in the background; pages never wait for it).",
    )


GROUPS: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    LocalBrokerSettings,
    WorkerSettings,
    InputSettings,
    ModelSettings,
    VectorStoreSettings,
    DriftSettings,
    RetrainSettings,
    TrackingSettings,
    ServeSettings,
)


class Settings(
    KafkaSettings,
    LocalBrokerSettings,
    WorkerSettings,
    InputSettings,
    ModelSettings,
    VectorStoreSettings,
    DriftSettings,
    RetrainSettings,
    TrackingSettings,
    ServeSettings,
):
    """All settings. Entry points build one; library code takes what it needs from it."""

    model_config = _CONFIG

    @property
    def local_bootstrap(self) -> str:
        return f"127.0.0.1:{self.local_kafka_port}"

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or self.local_bootstrap

    def kafka_connection(self) -> KafkaConnection:
        """The one Kafka connection config, for confluent-kafka and Faust alike."""
        password = self.kafka_sasl_password
        return KafkaConnection(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password else None,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
        )

    def review_policy(self) -> ReviewPolicy:
        """REVIEW_THRESHOLD, REVIEW_PRECISION(_BY_TARGET) and REVIEW_GATE as one value."""
        return ReviewPolicy(
            threshold=self.review_threshold,
            precision=self.review_precision,
            precision_by_target=self.review_precision_by_target,
            gate=tuple(self.review_gate),
            audit_share=self.review_audit_share,
        )

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection settings, security included."""
        return self.kafka_connection().librdkafka()
