"""Checks the command handlers run before their work: the broker is there, the registry too.

Each fails with one line that names what was tried and the setting to change, before a
command has changed anything (a promotion, a registered model) or waited on a retry loop.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from ticketflow.config import Settings

if TYPE_CHECKING:  # the handlers import the Kafka client and the registry when they run
    from ticketflow.models.registry import ModelRegistry

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 5.0


class UsageError(ValueError):
    """The command line asks for something impossible; ``ticketflow`` exits 2."""


class RegistryMissingError(RuntimeError):
    """MODEL_REGISTRY_DIR is not a directory; ``ticketflow`` exits 1."""


def require_broker(
    settings: Settings, timeout_s: float = BROKER_TIMEOUT_S, *, down_grace_s: float = 1.0
) -> None:
    """Raise ``BrokerUnreachableError`` (one line) unless the configured Kafka answers;
    ``down_grace_s``: how long refused connections are retried before that is the answer."""
    from ticketflow.adapters.kafka.preflight import check_broker

    if settings.kafka_bootstrap_servers:
        hint = "check KAFKA_BOOTSTRAP_SERVERS (and that the cluster is up)"
    else:
        hint = (
            "KAFKA_BOOTSTRAP_SERVERS is unset, so the local broker is meant: start it with "
            "`ticketflow broker up`, or set KAFKA_BOOTSTRAP_SERVERS"
        )
    check_broker(settings.kafka_client_config(), timeout_s, hint=hint, down_grace_s=down_grace_s)


def open_registry(settings: Settings) -> ModelRegistry:
    """The configured model registry, which must exist; says on stderr which one it is.

    A relative MODEL_REGISTRY_DIR is read from the working directory: run from elsewhere, an
    empty listing would look like "no models" when it is "wrong directory".
    """
    where = settings.model_registry_dir.resolve()
    require_registry_dir(settings)
    # Imported after the check: the registry module brings scikit-learn, seconds of imports.
    from ticketflow.models.registry import ModelRegistry

    registry = ModelRegistry(settings.model_registry_dir)
    print(f"registry: {where}", file=sys.stderr)
    return registry


def require_registry_dir(settings: Settings) -> None:
    """Raise ``RegistryMissingError`` unless MODEL_REGISTRY_DIR is a directory; cheap (no
    imports), so a command can check it before the broker and the registry's imports."""
    where = settings.model_registry_dir.resolve()
    if not where.is_dir():
        raise RegistryMissingError(
            f"no model registry at {where}: set MODEL_REGISTRY_DIR "
            "(a relative path is read from the working directory) or train a model first"
        )
