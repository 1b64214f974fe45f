"""Types shared by the command modules."""

from __future__ import annotations

import argparse
import codecs
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from ticketflow.config import Settings

if TYPE_CHECKING:  # argparse's class is generic only in typeshed
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands: TypeAlias = argparse._SubParsersAction
Handler = Callable[[argparse.Namespace, Settings], int]


def encoding_name(text: str) -> str:
    """An argparse ``type``: a codec Python knows (utf-8, cp1252, latin-1 …)."""
    try:
        codecs.lookup(text)
    except LookupError:
        raise argparse.ArgumentTypeError(
            f"unknown encoding {text!r}; e.g. utf-8, cp1252, latin-1, utf-16"
        ) from None
    return text


def add_encoding_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoding",
        type=encoding_name,
        default="utf-8",
        help="text encoding of a CSV or JSON(L) file (default utf-8; spreadsheet exports are "
        "often cp1252)",
    )


def add_map_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="column mapping, e.g. --map body=Document --map ticket_id=id",
    )
