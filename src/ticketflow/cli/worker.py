"""``ticketflow worker``: the labelling worker (Faust)."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys

from ticketflow.cli._checks import require_broker
from ticketflow.cli._types import Commands
from ticketflow.cli.broker import create_all_topics
from ticketflow.config import Settings

logger = logging.getLogger(__name__)
# glibc's mallopt parameter for the number of malloc arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


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


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process, as ``MALLOC_ARENA_MAX`` would.

    glibc gives a thread that meets a locked arena a new one, up to 8 per core, and freed memory
    stays in the arena that held it; the worker's many threads (Faust, librdkafka,
    onnxruntime, its executors) then hold memory apart (docs/speed.md, "Memory and cold
    start"). Call before the threads start. Does nothing, and says so by returning False, when
    ``arenas`` is 0, when ``MALLOC_ARENA_MAX`` is set (glibc has applied it) or when the C
    library is not glibc."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    done = bool(mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))
    logger.debug("malloc arenas capped at %d: %s", arenas, done)
    return done


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    limit_malloc_arenas(settings.worker_malloc_arenas)
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
