"""The backfill, similar and serve commands: arguments, and a parser that stays cheap."""

import subprocess
import sys

import pytest

from ticketflow.cli.main import build_parser
from ticketflow.runtime.similar import parse_where

pytestmark = pytest.mark.unit


def test_backfill_arguments() -> None:
    args = build_parser().parse_args(
        ["backfill", "--data", "old.csv", "--map", "body=Document", "--target", "Topic_group"]
    )
    assert (args.command, args.batch, args.force) == ("backfill", 256, False)
    assert args.map == ["body=Document"] and args.target == ["Topic_group"]


def test_similar_takes_an_id_or_a_text_not_both() -> None:
    parser = build_parser()
    by_id = parser.parse_args(["similar", "T-1", "--k", "3", "--where", "queue=Billing", "--json"])
    assert (by_id.ticket_id, by_id.text, by_id.k, by_id.where) == (
        "T-1",
        None,
        3,
        ["queue=Billing"],
    )
    assert parser.parse_args(["similar", "--text", "printer jam"]).text == "printer jam"
    for wrong in (["similar"], ["similar", "T-1", "--text", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)


def test_where_pairs() -> None:
    assert parse_where(["queue=IT Support", " priority = high "]) == {
        "queue": "IT Support",
        "priority": "high",
    }
    with pytest.raises(ValueError, match="TARGET=LABEL"):
        parse_where(["queue"])


def test_serve_arguments() -> None:
    args = build_parser().parse_args(["serve", "--port", "9000"])
    assert (args.port, args.host, args.max_tickets) == (9000, None, 256)


def test_building_the_parser_imports_no_web_or_store_library() -> None:
    code = (
        "import sys, ticketflow.cli\n"
        "ticketflow.cli.build_parser()\n"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'chromadb', 'starlette') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
