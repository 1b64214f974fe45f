"""MLflow, as an option (``MLFLOW_TRACKING_URI``): ``train``, ``retrain`` and ``experiments``
logged as runs, registered versions and promotions mirrored in MLflow's model registry.

ticketflow's own registry (:mod:`ticketflow.models.registry`) stays the source of truth: the
workers and ``serve`` read its ``current`` pointer and never MLflow. This module is the only
one that imports ``mlflow``, and only inside its functions, so nothing else (the worker least
of all) pays for the import. Every call is best effort: a tracking server that is down or
refuses costs one warning line on stderr, never a training or a promotion.

What a run holds (docs/mlflow.md):

* params: the model version, training config, classifier, encoder, split, data file and
  sha256, source commit, targets;
* metrics per target (``<target>.accuracy``, ``<target>.macro_f1``, ``<target>.ece``,
  ``<target>.baseline.accuracy`` ...) and the seconds spent;
* artifacts under ``ticketflow/``: ``metadata.json``, ``metrics.json``, the confusion-matrix
  PNGs, and the command's own reports (a retrain's, an experiment's results);
* a version of the registered model ``MLFLOW_MODEL_NAME`` tagged ``ticketflow_version``, with
  the alias ``champion`` on the version ``current`` names and ``challenger`` on a trained one
  that is not (yet) current.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ticketflow.config import Settings
from ticketflow.models.registry import METADATA_FILE, METRICS_FILE, ModelRegistry

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
VERSION_TAG = "ticketflow_version"
ARTIFACT_DIR = "ticketflow"
PROBE_TIMEOUT_S = 5.0
# Metric sections that are not one number per target (a class name may hold any character).
_NOT_SCALAR = frozenset({"per_class", "confusion", "absent", "label"})
_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")

T = TypeVar("T")


@dataclass(frozen=True)
class Tracking:
    """Where runs go: the server, the experiment and the registered model's name."""

    uri: str
    experiment: str = "ticketflow"
    model_name: str = "ticketflow"

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracking | None:
        """None when ``MLFLOW_TRACKING_URI`` is unset: tracking is off."""
        if not settings.mlflow_tracking_uri:
            return None
        return cls(
            uri=settings.mlflow_tracking_uri,
            experiment=settings.mlflow_experiment,
            model_name=settings.mlflow_model_name,
        )


def warn(tracking: Tracking, what: str, error: object) -> None:
    """One line on stderr (and in the log): what was not logged, and that nothing else is
    affected."""
    line = (
        f"warning: MLflow at {tracking.uri}: {what} not logged ({error}); "
        "ticketflow's registry has it all, nothing else is affected"
    )
    logger.warning("%s", line)
    print(line, file=sys.stderr)


def reachable(uri: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when an HTTP tracking server answers its health check, else why not. Asked
    first because MLflow's own client retries an unreachable server for minutes."""
    if not uri.startswith(("http://", "https://")):
        return None  # a local store (file:, sqlite:): nothing to probe
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as reply:
            status = int(reply.status)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"
    return None if status == 200 else f"health check answered HTTP {status}"


def _client(tracking: Tracking) -> MlflowClient:
    # Few quick retries: the server answered the probe a moment ago; a hang later must not
    # hold a training for MLflow's default of minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking.uri, registry_uri=tracking.uri)


def _best_effort(tracking: Tracking, what: str, work: Callable[[MlflowClient], T]) -> T | None:
    problem = reachable(tracking.uri)
    if problem is not None:
        warn(tracking, what, problem)
        return None
    try:
        return work(_client(tracking))
    except Exception as exc:
        warn(tracking, what, f"{type(exc).__name__}: {exc}")
        return None


def metric_key(*parts: str) -> str:
    """An MLflow metric or param key (letters, digits, ``_-. /``; the rest becomes ``_``)."""
    return _KEY.sub("_", ".".join(parts))[:250]


def flat_metrics(metrics: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, float]:
    """The finite numbers of a nested metrics dict, keyed ``a.b.c``; per-class tables and
    confusion matrices are left to the artifacts."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in _NOT_SCALAR:
            continue
        if isinstance(value, Mapping):
            out |= flat_metrics(value, (*prefix, str(key)))
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        ):
            out[metric_key(*prefix, str(key))] = float(value)
    return out


def version_params(registry: ModelRegistry, version: str) -> dict[str, str]:
    """What the model was trained from and with (its metadata and lineage)."""
    meta = registry.metadata(version)
    params: dict[str, Any] = {
        "ticketflow_version": version,
        "targets": ",".join(meta.targets),
        "training_config": meta.training_config,
        "classifier": meta.classifier,
        "embedding_model": meta.embedding_model,
        "embedding_backend": meta.embedding_backend,
        "static_model": meta.static_model,
        "max_text_chars": meta.max_text_chars,
        "review_precision": meta.review_precision,
        "n_train": meta.n_train,
        "n_test": meta.n_test,
        "data_path": meta.data_path,
        "data_sha256": meta.data_sha256,
    }
    if meta.lineage is not None:
        params |= {
            "seed": meta.lineage.seed,
            "test_size": meta.lineage.test_size,
            "limit": meta.lineage.limit,
            "git_commit": meta.lineage.git_commit,
        }
    return {k: str(v) for k, v in params.items() if v is not None}


def _log_run(
    client: MlflowClient,
    tracking: Tracking,
    *,
    name: str,
    command: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Iterable[Path],
    tags: Mapping[str, str] | None = None,
) -> str:
    from mlflow.entities import Metric, Param

    found = client.get_experiment_by_name(tracking.experiment)
    experiment = (
        found.experiment_id if found is not None else client.create_experiment(tracking.experiment)
    )
    run = client.create_run(
        experiment, run_name=name, tags={"ticketflow.command": command, **(tags or {})}
    )
    run_id = str(run.info.run_id)
    now = int(time.time() * 1000)
    # MLflow caps a param value at 6000 characters and a batch at 100 params/1000 metrics.
    param_list = [Param(metric_key(k), v[:6000]) for k, v in params.items()]
    metric_list = [Metric(k, v, now, 0) for k, v in metrics.items()]
    for start in range(0, len(param_list), 100):
        client.log_batch(run_id, params=param_list[start : start + 100])
    for start in range(0, len(metric_list), 1000):
        client.log_batch(run_id, metrics=metric_list[start : start + 1000])
    for path in artifacts:
        if path.is_file():
            client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
    client.set_terminated(run_id)
    return run_id


def _register(
    client: MlflowClient, tracking: Tracking, *, version: str, run_id: str, current: bool
) -> str:
    """A new version of the registered model for ``version``; returns its MLflow number."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(tracking.model_name)
    except MlflowException:
        client.create_registered_model(
            tracking.model_name, description="ticketflow models (its registry is the truth)"
        )
    created = client.create_model_version(
        tracking.model_name,
        source=f"runs:/{run_id}/{ARTIFACT_DIR}",
        run_id=run_id,
        tags={VERSION_TAG: version},
    )
    number = str(created.version)
    client.set_registered_model_alias(
        tracking.model_name, CHAMPION if current else CHALLENGER, number
    )
    return number


@dataclass(frozen=True)
class Extras:
    """What a command adds to a version's run: params, metrics, files and tags of its own
    (a retrain's decision, the champion's numbers beside the challenger's, its report)."""

    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: Sequence[Path] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


def log_version(
    tracking: Tracking | None,
    registry: ModelRegistry,
    version: str,
    *,
    command: str,
    current: bool,
    extras: Extras | None = None,
) -> str | None:
    """Log a model version ticketflow just registered as a run of ``command`` (train,
    retrain) and as a version of the MLflow registered model, aliased ``champion`` when it
    is ``current``, else ``challenger``. Returns the run id; None when tracking is off or
    failed (warned)."""
    if tracking is None:
        return None
    folder = registry.path(version)
    meta = registry.metadata(version)
    numbers = flat_metrics(meta.metrics)
    numbers |= {metric_key("seconds", k): v for k, v in meta.train_seconds.items()}
    extras = extras or Extras()
    numbers |= dict(extras.metrics)
    files = [folder / METADATA_FILE, folder / METRICS_FILE, *sorted(folder.glob("*.png"))]

    def work(client: MlflowClient) -> str:
        run_id = _log_run(
            client,
            tracking,
            name=f"{command} {version}",
            command=command,
            params={**version_params(registry, version), **extras.params},
            metrics=numbers,
            artifacts=[*files, *extras.artifacts],
            tags={VERSION_TAG: version, **extras.tags},
        )
        _register(client, tracking, version=version, run_id=run_id, current=current)
        return run_id

    return _best_effort(tracking, f"{command} of {version}", work)


def log_experiment(
    tracking: Tracking | None,
    *,
    name: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Iterable[Path] = (),
) -> str | None:
    """Log an ``experiments`` run (no model version: experiments register nothing)."""
    if tracking is None:
        return None
    return _best_effort(
        tracking,
        f"experiments run {name}",
        lambda client: _log_run(
            client,
            tracking,
            name=name,
            command="experiments",
            params=params,
            metrics=metrics,
            artifacts=list(artifacts),
        ),
    )


def set_champion(tracking: Tracking | None, version: str) -> str | None:
    """Move the ``champion`` alias to the MLflow version of ticketflow ``version`` (a
    promotion or rollback); the ``challenger`` alias leaves it. Returns the MLflow number;
    None when tracking is off, failed, or ``version`` was never logged (warned)."""
    if tracking is None:
        return None

    def work(client: MlflowClient) -> str | None:
        found = client.search_model_versions(
            f"name = '{tracking.model_name}' and tag.{VERSION_TAG} = '{version}'"
        )
        if not found:
            warn(
                tracking,
                f"promotion of {version}",
                "no MLflow version has that ticketflow "
                "version: it was trained before MLflow logging was on",
            )
            return None
        number = str(max(int(v.version) for v in found))
        client.set_registered_model_alias(tracking.model_name, CHAMPION, number)
        registered = client.get_registered_model(tracking.model_name)
        if registered.aliases.get(CHALLENGER) == number:
            client.delete_registered_model_alias(tracking.model_name, CHALLENGER)
        return number

    return _best_effort(tracking, f"promotion of {version}", work)


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Extras",
    "Tracking",
    "flat_metrics",
    "log_experiment",
    "log_version",
    "reachable",
    "set_champion",
]
