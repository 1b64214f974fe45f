"""Entry module for ``faust -A ticketflow.stream.main worker``: the app from the environment."""

from __future__ import annotations

from ticketflow.config import Settings
from ticketflow.stream.app import create_app

app = create_app(Settings())
