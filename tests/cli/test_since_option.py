"""``--since`` means the same on every command that takes it: one parser, one help text."""

from __future__ import annotations

import argparse

import pytest

from ticketflow.cli import build_parser
from ticketflow.data.since import SINCE_HELP

pytestmark = pytest.mark.unit


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(
    "command",
    [("dlq", "list"), ("dlq", "show"), ("dlq", "replay"), ("report", "performance")],
)
def test_every_since_option_documents_the_one_grammar(command: tuple[str, ...]) -> None:
    parser = _subparser(build_parser(), *command)
    since = next(a for a in parser._actions if "--since" in a.option_strings)
    assert since.help is not None and SINCE_HELP in since.help
