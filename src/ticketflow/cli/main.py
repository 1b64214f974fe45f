"""The ``ticketflow`` command: one entry point over the stream and batch command groups."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ticketflow import __version__
from ticketflow.config import Settings


def build_parser() -> argparse.ArgumentParser:
    # Imported here so ``import ticketflow.cli`` stays cheap and side-effect free.
    from ticketflow.cli import broker, drift, models, tickets, train, worker

    parser = argparse.ArgumentParser(
        prog="ticketflow",
        description="Classify support tickets as they stream through Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"ticketflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (broker, worker, tickets, drift, train, models):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings()
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper(), 20)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "chromadb.telemetry", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        code: int = args.handler(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's one place that turns errors into a clear message
        if args.verbose:
            raise
        print(f"ticketflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
