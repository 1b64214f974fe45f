"""The ``ticketflow`` command: one entry point over the stream and batch command groups."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from ticketflow import __version__
from ticketflow.config import Settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

EPILOG = """\
exit codes:
  0  done (produce: also when some rows were skipped; each is reported as a warning)
  1  failed: a service was unreachable (Kafka, ChromaDB), no model registry, nothing could
     be sent, or a step went wrong; the last line of stderr says why
  2  usage error, bad input file or column mapping, or a bad setting (environment / .env)
  3  broker up|status: the local broker is not running
  130  interrupted (Ctrl-C)

Commands that need Kafka check it first and fail within seconds when it does not answer.
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, as bad settings and bad files are: the usage is in --help.
    Subcommands' parsers are of this class too (argparse makes them of the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    # Imported here so ``import ticketflow.cli`` stays cheap and side-effect free.
    from ticketflow.cli import (
        broker,
        dlq,
        drift,
        incidents,
        memory,
        models,
        report,
        review,
        serve,
        tickets,
        train,
        worker,
    )

    parser = _Parser(
        prog="ticketflow",
        description="Classify support tickets as they stream through Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"ticketflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = (
        broker,
        worker,
        tickets,
        dlq,
        incidents,
        drift,
        train,
        models,
        memory,
        review,
        serve,
        report,
    )
    for group in groups:
        group.register(commands)
    return parser


def _is_secret(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and SecretStr in (field.annotation, *_args(field.annotation))


def _args(annotation: object) -> tuple[object, ...]:
    import typing

    return typing.get_args(annotation)


def setting_errors(exc: ValidationError) -> list[str]:
    """One line per bad setting: its variable, the value (secrets hidden) and the reason."""
    lines = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "?"
        value = "'***'" if _is_secret(name) else repr(error.get("input"))
        # pydantic prefixes a validator's own message with its class: noise to a user.
        reason = error["msg"].removeprefix("Value error, ")
        lines.append(f"ticketflow: bad setting {name.upper()}={value}: {reason}")
    return lines


def load_settings() -> Settings | None:
    """The settings, or None after printing what is wrong with them (one line each)."""
    try:
        return Settings()
    except ValidationError as exc:
        for line in setting_errors(exc):
            print(line, file=sys.stderr)
    except SettingsError as exc:  # a value pydantic-settings could not even parse (JSON)
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "?"
        print(f"ticketflow: bad setting {name}: cannot parse the value ({exc})", file=sys.stderr)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from ticketflow.cli._checks import UsageError
    from ticketflow.data.errors import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings is None:
        return EXIT_USAGE
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
        return EXIT_USAGE if isinstance(exc, InputError | UsageError) else EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
