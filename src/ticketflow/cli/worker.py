"""``ticketflow worker``: the labelling worker (Faust)."""

from __future__ import annotations

import argparse
import sys

from ticketflow.cli._checks import require_broker
from ticketflow.cli._types import Commands
from ticketflow.cli.broker import create_all_topics
from ticketflow.config import Settings


def register(commands: Commands) -> None:
    worker = commands.add_parser("worker", help="run the labelling worker (Faust)")
    worker.add_argument("--no-create-topics", action="store_true")
    worker.set_defaults(handler=run_worker)


def skip_unused_imports() -> None:
    """Keep pandas out of the worker process: scikit-learn imports it whenever it is
    installed (sklearn.utils.fixes) and the worker never uses it, and its import is a large
    share of the worker's cold start (docs/speed.md). A ``None`` entry in ``sys.modules``
    makes ``import pandas`` raise ImportError, which scikit-learn takes for "not installed".
    Call before the imports."""
    if "pandas" not in sys.modules:
        sys.modules["pandas"] = None  # type: ignore[assignment]


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    skip_unused_imports()
    # Before Faust: its consumer would retry an absent broker for ever, logging each time.
    require_broker(settings)
    import faust

    from ticketflow.stream.app import create_app

    if not args.no_create_topics:
        create_all_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
