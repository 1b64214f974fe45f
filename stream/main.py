"""Entry module for ``faust -A stream.main worker``: builds the app from the environment."""

from __future__ import annotations

from models.settings import Settings
from stream.app import create_app

app = create_app(Settings())
