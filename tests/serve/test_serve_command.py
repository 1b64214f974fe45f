"""``ticketflow serve`` refuses, in seconds and before loading a model, to be open to the
network without tokens, and to start on a malformed tokens file."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ticketflow.cli.serve import bind_address
from ticketflow.config import Settings

pytestmark = pytest.mark.unit


def serve(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, float]:
    clean = {k: v for k, v in os.environ.items() if k not in ("SERVE_TOKENS_FILE", "METRICS_BIND")}
    # A registry that does not exist: reaching the model load would fail differently.
    clean.update(MODEL_REGISTRY_DIR=str(tmp_path / "no-registry"), **env)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ticketflow", "serve", *args],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr, time.perf_counter() - started


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--host", "0.0.0.0"], {}), ([], {"METRICS_BIND": "0.0.0.0"}), (["--host", "::"], {})],
)
def test_no_tokens_and_a_network_address_is_refused_at_once(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    code, stderr, took = serve(tmp_path, *args, **env)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert "without tokens: set SERVE_TOKENS_FILE" in lines[0]
    assert took < 5, took
    print(f"\n{args or env}: exit {code} in {took:.2f}s: {lines[0]}")


def test_a_malformed_tokens_file_names_the_line_not_the_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# callers\ndesk:desk-token-0123456789\nbot weak-secret-xyz\n")
    code, stderr, took = serve(tmp_path, SERVE_TOKENS_FILE=str(tokens))
    assert code == 2 and took < 5
    assert "line 3" in stderr and "weak-secret" not in stderr and "desk-token" not in stderr


def test_where_serve_binds() -> None:
    def host(*, flag: str | None = None, tokens: bool, **env: str) -> str | None:
        settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
        return bind_address(argparse.Namespace(host=flag), settings, has_tokens=tokens)

    assert host(tokens=False) == "127.0.0.1"  # METRICS_BIND's default is not a request
    assert host(tokens=False, flag="::1") == "::1"
    assert host(tokens=False, flag="0.0.0.0") is None
    assert host(tokens=False, metrics_bind="10.1.2.3") is None
    assert host(tokens=True) == "0.0.0.0"
    assert host(tokens=True, flag="10.1.2.3") == "10.1.2.3"
