"""docker/entrypoint.sh hands every CLI command to ``python -m ticketflow`` (a command it
mistook for a program would fail in the container with "not found"), and anything else to
itself. Run with sh and a fake ``python`` first on PATH that records its arguments."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from ticketflow.cli import build_parser

pytestmark = pytest.mark.unit

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"


def cli_commands() -> list[str]:
    (subparsers,) = [
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ]
    return sorted(subparsers.choices)


def run_entrypoint(tmp_path: Path, *args: str) -> list[str]:
    """The arguments the fake ``python`` received."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "argv"
    record.unlink(missing_ok=True)
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record)}
    run = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    assert record.exists(), f"python was not run for {args}: {run.stdout}{run.stderr}"
    return record.read_text().splitlines()


def test_the_parser_has_the_commands_the_images_run() -> None:
    commands = cli_commands()
    assert {"worker", "monitor", "train", "retrain", "drift", "models", "topics"} <= set(commands)


@pytest.mark.parametrize("command", cli_commands())
def test_every_cli_command_reaches_python_m_ticketflow(tmp_path: Path, command: str) -> None:
    argv = run_entrypoint(tmp_path, command, "--some-flag", "a value")
    assert argv == ["-m", "ticketflow", command, "--some-flag", "a value"]


def test_defaults_and_options_reach_the_cli(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path) == ["-m", "ticketflow", "worker"]  # no CMD
    assert run_entrypoint(tmp_path, "--help") == ["-m", "ticketflow", "--help"]  # batch CMD
    assert run_entrypoint(tmp_path, "--version") == ["-m", "ticketflow", "--version"]


def test_programs_run_as_given(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "python", "-c", "pass") == ["-c", "pass"]
    out = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", "echo from-sh"], capture_output=True, text=True
    )
    assert out.stdout == "from-sh\n"
    out = subprocess.run(
        ["sh", str(ENTRYPOINT), "/bin/echo", "abs"], capture_output=True, text=True
    )
    assert out.stdout == "abs\n"
