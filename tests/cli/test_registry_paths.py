"""Commands that read the registry say which one, and an absent one is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.test_registry import save_model
from ticketflow.cli import main
from ticketflow.models.registry import ModelRegistry

pytestmark = pytest.mark.unit


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without a registry (and without a .env)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MODEL_REGISTRY_DIR", raising=False)
    return cwd


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["evaluate", "--data", "t.csv"],
        ["drift", "reference", "--data", "t.csv"],
        ["retrain", "--no-promote"],
    ],
    ids=" ".join,
)
def test_an_absent_registry_is_an_error_naming_the_path(
    command: list[str], elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(command) == 1
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert str(elsewhere / "models" / "registry") in line  # the default, made absolute
    assert "MODEL_REGISTRY_DIR" in line
    assert captured.out == ""


def test_models_list_says_which_registry_it_read(
    tmp_path: Path,
    elsewhere: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    monkeypatch.setenv("MODEL_REGISTRY_DIR", "../registry")  # relative to the working directory
    assert main(["models", "list"]) == 0
    captured = capsys.readouterr()
    assert f"registry: {(tmp_path / 'registry').resolve()}" in captured.err
    assert "* v1" in captured.out


def test_registry_exists(tmp_path: Path) -> None:
    assert not ModelRegistry(tmp_path / "none").exists()
    assert ModelRegistry(tmp_path).exists()
