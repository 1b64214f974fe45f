"""Errors of the input a user hands in, kept apart from the readers so that the CLI can tell
them from failures without importing pandas (the worker's process never does)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["InputError"]


class InputError(ValueError):
    """A ticket file or column mapping that cannot be used as given. The message is one line
    naming the file, the column (with the columns there are) or the mapping."""
