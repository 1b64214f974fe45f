"""The cross-validation options ``train`` and ``retrain`` share: what a fit costs.

The recipe cross-validates twice over: out-of-fold predictions that the temperature and the
review cuts are chosen on, and (for hybrid features) a choice of the feature blocks' weights,
one CV per choice. The defaults are the recipe ``ticketflow experiments`` chose; these
options trade some of that choice for a fit several times cheaper (``bench.loop`` runs its
retrains so, about a minute each on two cores instead of several).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from ticketflow.cli._values import COUNT, number

if TYPE_CHECKING:  # the handlers import the model code when they run
    from ticketflow.models.recipe import ModelConfig


def add_cv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cv-folds",
        type=number(int, ge=2),
        help="folds of the out-of-fold predictions the temperature and review cuts are "
        "chosen on (default 5; at most 3 when there are more training rows than "
        "--cv-max-rows and they are sampled)",
    )
    parser.add_argument(
        "--cv-max-rows",
        type=COUNT,
        help="out-of-fold predictions from a stratified sample of at most N training rows "
        "(default 20,000); the final model is still fit on every row",
    )
    parser.add_argument(
        "--no-block-search",
        action="store_true",
        help="keep the feature blocks' weights as built instead of choosing them by "
        "cross-validation (one CV per target instead of one per choice)",
    )


def with_cv_options(config: ModelConfig, args: argparse.Namespace) -> ModelConfig:
    """``config`` with the options of :func:`add_cv_arguments` that were given."""
    if args.cv_folds is not None:
        config = replace(config, cv_folds=args.cv_folds)
    if args.cv_max_rows is not None:
        config = replace(config, cv_max_rows=args.cv_max_rows)
    if args.no_block_search:
        config = replace(config, block_grid=())
    return config
