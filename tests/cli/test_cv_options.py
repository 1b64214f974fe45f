"""``train`` and ``retrain`` take the recipe's cross-validation options, parsed the same way."""

from dataclasses import replace

import pytest

from ticketflow.cli._recipe import with_cv_options
from ticketflow.cli.main import build_parser
from ticketflow.models.recipe import ModelConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("command", [["train", "--data", "x.jsonl"], ["retrain"]])
def test_the_options_change_only_what_they_name(command: list[str]) -> None:
    parser = build_parser()
    plain = parser.parse_args(command)
    assert with_cv_options(ModelConfig(), plain) == ModelConfig()
    cheap = parser.parse_args(
        [*command, "--cv-folds", "3", "--cv-max-rows", "3000", "--no-block-search"]
    )
    assert with_cv_options(ModelConfig(), cheap) == replace(
        ModelConfig(), cv_folds=3, cv_max_rows=3000, block_grid=()
    )


@pytest.mark.parametrize("option", [["--cv-folds", "1"], ["--cv-max-rows", "0"]])
def test_out_of_range_values_are_refused(option: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["retrain", *option])
