"""Types shared by the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from ticketflow.config import Settings

if TYPE_CHECKING:  # argparse's class is generic only in typeshed
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands: TypeAlias = argparse._SubParsersAction
Handler = Callable[[argparse.Namespace, Settings], int]


def add_map_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="column mapping, e.g. --map body=Document --map ticket_id=id",
    )
