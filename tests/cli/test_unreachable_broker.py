"""Every command that needs Kafka fails fast, and says so in one line, when it is not there.

``models promote|rollback`` do not need it: tests/cli/test_promote_offline.py.

Each command runs as its own process, as a user runs it: from an empty directory (no
``.env``), with KAFKA_BOOTSTRAP_SERVERS pointing at a port nothing listens on. No broker is
needed, so these are unit tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.models.test_registry import save_model
from ticketflow.config import Settings
from ticketflow.models.registry import ModelRegistry

pytestmark = pytest.mark.unit

# A bound on hanging, not a speed target: each command gives up on an unreachable service
# after about a second of its own; the rest is the interpreter's start and imports, which a
# loaded CI machine once stretched past a 10 s bound. A command that waits on the service
# does not finish at all.
LIMIT_S = 20.0
MAX_LINES = 5

BROKER_COMMANDS = [
    ["topics", "create"],
    ["produce", "--sample", "3"],
    ["produce", "tickets.jsonl"],
    ["consume", "--timeout", "3"],
    ["feedback", "T-1", "--queue", "Billing"],
    ["worker"],
    ["monitor"],
    ["retrain", "--if-drift"],
    ["drift", "report"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "replay"],
    ["incidents", "list"],
    ["incidents", "show", "INC-1"],
]


def closed_port() -> int:
    """A port nothing listens on: bound once by the OS's choice, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The process environment without any ticketflow setting, then ``settings``; state,
    caches and the registry live under ``tmp_path``."""
    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(
        STATE_DIR=str(tmp_path / "state"),
        CACHE_DIR=str(tmp_path / "cache"),
        MODEL_REGISTRY_DIR=str(tmp_path / "registry"),
        CHROMA_PATH=str(tmp_path / "chroma"),
        DRIFT_REFERENCE_DIR=str(tmp_path / "reference"),
        DRIFT_REPORT_DIR=str(tmp_path / "reports"),
        RETRAIN_REPORT_DIR=str(tmp_path / "retrain"),
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


def run_timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    """(exit code, seconds, stdout + stderr) of ``python -m ticketflow ARGS``."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ticketflow", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=LIMIT_S + 5,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        pytest.fail(
            f"`ticketflow {' '.join(args)}` still ran after {LIMIT_S + 5:.0f} s; "
            f"its last output: {text[-500:]}"
        )
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory with a ticket file and a registry holding two models, the
    second promoted over the first (so promote v1 and rollback pass their registry checks)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "tickets.jsonl").write_text(
        '{"ticket_id": "T-1", "subject": "refund", "body": "please refund"}\n', encoding="utf-8"
    )
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    registry.promote("v2", by="test", reason="setup")
    return cwd


@pytest.mark.parametrize("command", BROKER_COMMANDS, ids=" ".join)
def test_broker_commands_fail_fast_in_one_line(
    command: list[str], workdir: Path, tmp_path: Path
) -> None:
    servers = f"127.0.0.1:{closed_port()}"
    env = clean_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=servers)
    code, seconds, output = run_timed(command, workdir, env)
    lines = output.strip().splitlines()
    shown = f"`ticketflow {' '.join(command)}` -> {code} in {seconds:.1f} s:\n{output[-2000:]}"
    assert code != 0, shown
    assert seconds <= LIMIT_S, shown
    assert len(lines) <= MAX_LINES, shown
    assert servers in output, shown
    assert "KAFKA_BOOTSTRAP_SERVERS" in output, shown


def test_without_servers_the_local_broker_is_named(workdir: Path, tmp_path: Path) -> None:
    port = closed_port()
    env = clean_env(tmp_path, LOCAL_KAFKA_PORT=str(port))
    code, seconds, output = run_timed(["topics", "create"], workdir, env)
    assert code == 1 and seconds <= LIMIT_S, output
    assert len(output.strip().splitlines()) == 1, output
    assert f"127.0.0.1:{port}" in output
    assert "ticketflow broker up" in output and "KAFKA_BOOTSTRAP_SERVERS" in output
