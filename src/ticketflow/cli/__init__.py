"""The ``ticketflow`` command line: one thin module per command group, no logic of its own."""

from ticketflow.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
