"""The README is a contract: every setting and every command is documented there."""

from pathlib import Path

import pytest

from ticketflow.cli import build_parser
from ticketflow.config import Settings

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"`{field.upper()}`" in README or f"{field.upper()}`" in README


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    for name in commands:
        assert f"ticketflow {name}" in README, name
