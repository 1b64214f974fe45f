"""The package installs as one import package and its command works from any directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ticketflow

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "ticketflow"


def test_wheel_holds_only_the_ticketflow_package(tmp_path: Path) -> None:
    # Build from a copy: the build writes build/ and *.egg-info next to the sources.
    source = tmp_path / "src-copy"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    code = (
        "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    )
    wheel = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"ticketflow", f"ticketflow-{ticketflow.__version__}.dist-info"}, tops
    # data files the code reads by path travel with it
    assert "ticketflow/schemas/json/ticket.schema.json" in names
    assert "ticketflow/devtools/kafka/pom.xml" in names


def test_command_works_beside_a_users_models_py(tmp_path: Path) -> None:
    # A user's own models.py / schemas.py in the working directory must not shadow ours.
    (tmp_path / "models.py").write_text("raise SystemExit('the user module was imported')\n")
    (tmp_path / "schemas.py").write_text("raise SystemExit('the user module was imported')\n")
    version = subprocess.run(
        [str(SCRIPT), "--version"], cwd=tmp_path, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"ticketflow {ticketflow.__version__}"
    sample = subprocess.run(
        [str(SCRIPT), "sample", "--n", "5", "--out", "x.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert sample.returncode == 0, sample.stderr
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 5
    module = subprocess.run(
        [sys.executable, "-m", "ticketflow", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert module.stdout == version.stdout


def test_chromadb_keeps_its_own_schemas_directory() -> None:
    import chromadb

    site = Path(chromadb.__file__).resolve().parents[1]
    ours = site / "schemas" / "__init__.py"
    assert not ours.exists(), f"{ours} belongs to no one: ticketflow installs only ticketflow/"


def test_console_script_help(tmp_path: Path) -> None:
    out = subprocess.run([str(SCRIPT), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("broker", "topics", "worker", "produce", "consume", "sample", "train"):
        assert command in out.stdout
