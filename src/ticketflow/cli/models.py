"""``ticketflow retrain`` and ``ticketflow models``: challengers, promotions, rollbacks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ticketflow.cli._checks import (
    BROKER_TIMEOUT_S,
    open_registry,
    require_broker,
    require_registry_dir,
)
from ticketflow.cli._recipe import add_cv_arguments, with_cv_options
from ticketflow.cli._types import Commands
from ticketflow.cli._values import POSITIVE, SEED
from ticketflow.config import Settings

if TYPE_CHECKING:  # the handlers import the batch code when they run
    from ticketflow.batch.promotion import Announce
    from ticketflow.batch.retrain import RetrainPolicy, RetrainResult
    from ticketflow.models.embedding import Encoder
    from ticketflow.models.registry import ModelMetadata, ModelRegistry
    from ticketflow.schemas import ModelUpdate

logger = logging.getLogger(__name__)

# How long an announcement waits for the broker: the pointer has moved already, so an absent
# broker costs a warning, not a failed promotion (a refused port answers within a second).
ANNOUNCE_TIMEOUT_S = BROKER_TIMEOUT_S
# Refused connections are believed sooner than for a command that needs the broker: a wrong
# "down" costs a warning and a poll interval here, so promote stays well within 5 s offline.
ANNOUNCE_DOWN_GRACE_S = 0.25


def register(commands: Commands) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="challenger from the stored vectors + labels; promote it only when it is better",
        description="Train a challenger on the vectors, documents and labels in ChromaDB "
        "(human corrections first), compare it with the current model on held-out human "
        "labels, register it, write a report and promote + announce it only when it wins.",
    )
    retrain.add_argument(
        "--eval-file",
        type=Path,
        help="fixed evaluation set: ticket_id + one column per target (JSONL/CSV/Parquet); "
        "the tickets must be in the store, they are never trained on",
    )
    retrain.add_argument(
        "--if-drift",
        action="store_true",
        help="run only when a drift event arrived since the last promotion",
    )
    retrain.add_argument("--force", action="store_true", help="promote even if it loses")
    retrain.add_argument("--no-promote", action="store_true", help="evaluate and register only")
    retrain.add_argument("--c", type=POSITIVE, help="LogisticRegression C (default: train's)")
    retrain.add_argument(
        "--features",
        choices=["hybrid", "embedding"],
        default="hybrid",
        help="as for train: hybrid (default) or the embedding alone",
    )
    add_cv_arguments(retrain)
    retrain.add_argument("--seed", type=SEED, default=42)
    retrain.add_argument("--by", help="recorded as who promoted (default: $USER)")
    retrain.set_defaults(handler=run_retrain)

    models = commands.add_parser("models", help="list, promote or roll back registered models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    listing = models_commands.add_parser(
        "list",
        help="versions (current marked *) and the history",
        description="Registered versions, current marked *: rows trained on, the test "
        "macro-F1 of each target (on the held-out test part), the training config; then the "
        "promotion history.",
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per version: its metadata (lineage included) and current",
    )
    promote = models_commands.add_parser("promote", help="make VERSION current and announce it")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--reason", default="manual promotion")
    promote.add_argument("--by", help="default: $USER")
    rollback = models_commands.add_parser(
        "rollback", help="back to the previous champion, announced"
    )
    rollback.add_argument("--reason", default="manual rollback")
    rollback.add_argument("--by", help="default: $USER")
    models.set_defaults(handler=run_models)


def announcer(settings: Settings) -> Announce:
    """Promotions are announced on KAFKA_TOPIC_MODEL_UPDATES."""
    from ticketflow.batch.promotion import kafka_announcer

    return kafka_announcer(
        settings.kafka_client_config(),
        settings.kafka_topic_model_updates,
        replication=settings.kafka_topic_replication,
    )


def announce(settings: Settings, update: ModelUpdate) -> bool:
    """Announce a model that became current on KAFKA_TOPIC_MODEL_UPDATES so the workers
    reload it at once; True when the broker acknowledged it.

    Best effort, for train, retrain, promote and rollback alike: the registry's pointer is
    the truth and has moved already, and workers that miss the announcement find the model
    by polling it, so an unreachable broker costs one warning line, not the command.
    """
    from ticketflow.adapters.kafka.clients import DeliveryError
    from ticketflow.adapters.kafka.errors import KafkaClientError, KafkaSetupError
    from ticketflow.adapters.kafka.preflight import BrokerUnreachableError

    try:
        require_broker(settings, ANNOUNCE_TIMEOUT_S, down_grace_s=ANNOUNCE_DOWN_GRACE_S)
        announcer(settings)(update)
    except (BrokerUnreachableError, KafkaSetupError, DeliveryError, KafkaClientError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(
            f"warning: {update.version} is current but not announced on "
            f"{settings.kafka_topic_model_updates}: {reason} "
            f"(KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}); "
            "workers load it when they next poll the registry",
            file=sys.stderr,
        )
        return False
    return True


def _announced(done: bool) -> str:
    return "announced" if done else "not announced"


def run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    require_registry_dir(settings)
    if args.if_drift:
        # Reading drift events needs Kafka: find out before the store is read and a
        # challenger trained, not after (and before the registry's imports, a second of
        # scikit-learn on a busy node). A promotion's announcement is best effort.
        require_broker(settings)
    from ticketflow.models.registry import ModelRegistry

    # One retrain at a time: two Jobs must not both decide against the same champion.
    with ModelRegistry(settings.model_registry_dir).lock():
        return _retrain(args, settings)


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    registry = open_registry(settings)

    from ticketflow.batch import promotion
    from ticketflow.batch.retrain import (
        RetrainRequest,
        load_eval_labels,
        read_store,
        retrain,
    )
    from ticketflow.models.recipe import EMBEDDING_LR, ModelConfig
    from ticketflow.monitoring.reference import ReferenceSpec

    if args.if_drift:
        since = promotion.last_promotion(registry)
        if since is None:
            raise SystemExit("no current model: run ticketflow train first")
        events = promotion.drift_since(
            settings.kafka_client_config(), settings.kafka_topic_drift, since
        )
        if not events:
            print(f"no drift event since the last promotion ({since:%Y-%m-%d %H:%M:%S} UTC)")
            return 0
        print(f"{len(events)} drift event(s) since {since:%Y-%m-%d %H:%M:%S} UTC: retraining")
    current = registry.current_version()
    targets = registry.metadata(current).targets if current else []
    # The file before the store: a bad --eval-file fails before minutes of reading vectors.
    eval_labels = load_eval_labels(args.eval_file, targets) if args.eval_file else None
    from ticketflow.runtime.loading import chroma_client

    client = chroma_client(settings)
    # get_collection, not get_or_create: retraining never declares a vector space itself.
    stored = read_store(client.get_collection(settings.chroma_collection))
    config = ModelConfig() if args.features == "hybrid" else EMBEDDING_LR
    if args.c is not None:
        config = replace(config, c=args.c)
    config = with_cv_options(config, args)
    result = retrain(
        stored,
        RetrainRequest(
            config=config,
            eval_labels=eval_labels,
            force=args.force,
            seed=args.seed,
            source=f"chroma:{settings.chroma_collection}",
            cascade_agreement=settings.cascade_agreement,
            cascade_escalate=settings.cascade_escalate,
            progress=True,
        ),
        registry=registry,
        dense_encoder=transformer_encoder(settings, registry.metadata(current))
        if current
        else None,
        policy=retrain_policy(settings),
        review=settings.review_policy(),
        reference=ReferenceSpec(settings.drift_reference_dir, settings.drift_reference_size),
        report_dir=settings.retrain_report_dir,
    )
    for reason in result.reasons:
        print(f"  {reason}")
    print(f"report: {result.markdown_path}")
    promoted = result.promote and not args.no_promote
    track_retrain(settings, registry, result, promoted=promoted)
    if promoted:
        update = promotion.promote(
            registry,
            result.challenger,
            by=promotion.who(args.by),
            reason=f"retrain {result.decision}: " + "; ".join(result.reasons),
            announce=None,
            forced=result.decision == "forced",
            report=str(result.json_path),
        )
        # Under the registry lock, as promote: announcements follow the pointer's order.
        done = announce(settings, update)
        print(
            f"challenger {update.version}: {result.decision}, {_announced(done)} "
            f"(was {result.champion})"
        )
    else:
        print(
            f"challenger {result.challenger}: {result.decision}"
            f"{' (not promoted: --no-promote)' if result.promote else ''}; "
            f"{result.champion} stays current"
        )
    return 0


def transformer_encoder(settings: Settings, champion: ModelMetadata) -> Encoder | None:
    """A cascade champion's transformer encoder, so retraining refits its transformer stage on
    the stored text (the store holds the static vectors only); None for a single-stage model,
    which reads the stored vectors and needs no encoder. Cached on disk by text, as for
    ``ticketflow train``: a nightly retrain embeds only the tickets stored since the last."""
    if champion.static_model is None:
        return None
    from ticketflow.batch.embedding_cache import CachedEncoder
    from ticketflow.models.serving import serving_encoders

    encoders = serving_encoders(
        champion,
        registry_dir=settings.model_registry_dir,
        cache_dir=settings.cache_dir,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
    )
    return CachedEncoder(encoders.dense, settings.cache_dir / "embeddings")


def track_retrain(
    settings: Settings, registry: ModelRegistry, result: RetrainResult, *, promoted: bool
) -> None:
    """With MLFLOW_TRACKING_URI: the challenger as an MLflow run (its held-out metrics, the
    champion's beside them, the decision and the report) and a registered version, aliased
    champion when it is promoted."""
    if not settings.mlflow_tracking_uri:
        return
    from ticketflow.batch import tracking
    from ticketflow.batch.retrain import HELD_OUT

    champion: dict[str, float] = {}
    for name, pair in result.report.get("metrics", {}).items():
        champion |= tracking.flat_metrics(pair.get("champion", {}), (name, "champion"))
        if name != HELD_OUT:  # the challenger's held-out numbers are its model metrics
            champion |= tracking.flat_metrics(pair.get("challenger", {}), (name, "challenger"))
    tracking.log_version(
        tracking.Tracking.from_settings(settings),
        registry,
        result.challenger,
        command="retrain",
        current=promoted,
        extras=tracking.Extras(
            params={"champion": result.champion, "decision": result.decision},
            metrics=champion,
            artifacts=[p for p in (result.json_path, result.markdown_path) if p is not None],
            tags={"decision": result.decision, "reasons": "; ".join(result.reasons)[:5000]},
        ),
    )


def track_champion(settings: Settings, version: str) -> None:
    """With MLFLOW_TRACKING_URI: MLflow's champion alias follows the pointer."""
    if not settings.mlflow_tracking_uri:
        return
    from ticketflow.batch import tracking

    tracking.set_champion(tracking.Tracking.from_settings(settings), version)


def warn_without_reference(settings: Settings, version: str) -> None:
    """The monitor skips the windows of a version without a reference set: say so now."""
    if not (settings.drift_reference_dir / version).is_dir():
        print(
            f"warning: no drift reference for {version} in {settings.drift_reference_dir}: "
            "the monitor will skip its windows; build one with "
            f"`ticketflow drift reference --data FILE --version {version}`",
            file=sys.stderr,
        )


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    # No broker check: the pointer is the truth (serve and the workers poll it), so a
    # promotion works offline and its announcement is best effort.
    registry = open_registry(settings)

    from ticketflow.batch import promotion

    if args.models_command == "promote":
        with registry.lock():
            update = promotion.promote(
                registry,
                args.version,
                by=promotion.who(args.by),
                reason=args.reason,
                announce=None,
            )
            done = announce(settings, update)  # under the lock: in the pointer's order
        print(f"promoted {update.version} (was {update.previous_version}), {_announced(done)}")
        track_champion(settings, update.version)
        warn_without_reference(settings, update.version)
        return 0
    if args.models_command == "rollback":
        with registry.lock():
            update = promotion.rollback(
                registry,
                by=promotion.who(args.by),
                reason=args.reason,
                announce=None,
            )
            done = announce(settings, update)
        print(f"rolled back {update.previous_version} -> {update.version}, {_announced(done)}")
        track_champion(settings, update.version)
        warn_without_reference(settings, update.version)
        return 0
    current = registry.current_version()
    if args.json:
        listed = [
            {"current": version == current, **registry.metadata(version).model_dump(mode="json")}
            for version in registry.versions()
        ]
        print(json.dumps(listed, indent=2))
        return 0
    print(f"  {'version':<34} {'created (UTC)':<19} {'train':>6}  test macro-F1 per target  config")
    for version in registry.versions():
        meta = registry.metadata(version)
        scores = []
        for target in meta.targets:
            f1 = meta.metrics.get(target, {}).get("macro_f1")
            scores.append(f"{target} {'–' if f1 is None else f'{f1:.3f}'}")
        print(
            f"{'*' if version == current else ' '} {version:<34} "
            f"{meta.created_at:%Y-%m-%d %H:%M:%S} {meta.n_train:>6}  "
            f"{', '.join(scores):<24}  {meta.training_config or ''}"
        )
        for target, labels in meta.new_labels.items():
            # A class people introduced through the review desk: shown until it is common.
            print(f"{'':36}new {target}: {', '.join(labels)}")
    history = registry.history()
    if history:
        print("\nhistory (latest last):")
        for entry in history[-10:]:
            forced = " FORCED" if entry.forced else ""
            print(
                f"  {entry.at:%Y-%m-%d %H:%M:%S} {entry.action:<8} {entry.previous} -> "
                f"{entry.version} by {entry.by}{forced}: {entry.reason[:120]}"
            )
    return 0


def retrain_policy(settings: Settings) -> RetrainPolicy:
    """The RETRAIN_* settings as the retrain Job's policy: each field of
    :class:`RetrainPolicy` is the setting of the same name with the ``retrain_`` prefix, so a
    new field cannot be added without its setting (this raises AttributeError in the tests)."""
    from ticketflow.batch.retrain import RetrainPolicy

    values = {f.name: getattr(settings, f"retrain_{f.name}") for f in fields(RetrainPolicy)}
    return RetrainPolicy(**values)
