"""bench.loop --broker fits its challengers with bench.loop's recipe, through the CLI."""

from __future__ import annotations

import pytest

from bench.loop import CONFIG
from bench.loop_broker import RETRAIN_OPTIONS
from ticketflow.cli._recipe import with_cv_options
from ticketflow.cli.main import build_parser
from ticketflow.models.recipe import ModelConfig

pytestmark = pytest.mark.unit


def test_the_retrain_command_gets_the_in_process_recipe() -> None:
    args = build_parser().parse_args(["retrain", *RETRAIN_OPTIONS])
    assert with_cv_options(ModelConfig(), args) == CONFIG != ModelConfig()
