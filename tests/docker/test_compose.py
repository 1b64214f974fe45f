"""docker/compose.yaml as `docker compose` reads it (YAML merge keys resolved)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"


def service_env(name: str) -> dict[str, Any]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    env: dict[str, Any] = services[name]["environment"]
    return env


def test_workers_store_the_text_retrain_learns_from() -> None:
    # none stores no text: `ticketflow retrain` then stops (the default is redacted)
    assert service_env("worker").get("CHROMA_DOCUMENT") in {"redacted", "full"}


def test_the_monitor_reads_the_lag_of_the_workers_group() -> None:
    worker, monitor = service_env("worker"), service_env("monitor")
    for name in ("WORKER_APP_ID", "KAFKA_TOPIC_TICKETS", "KAFKA_BOOTSTRAP_SERVERS"):
        assert monitor.get(name) == worker.get(name), name
