"""The wire form of a ticket event: what a producer sends to ``tickets``.

Kept apart from the file readers (which import pandas) so the worker's process, which sends
but never reads files, can encode without them.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from typing import Any

logger = logging.getLogger(__name__)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def encode_event(event: dict[str, Any]) -> bytes:
    """The wire form of an event: UTF-8 JSON; datetimes as ISO 8601, NaN refused."""
    return json.dumps(event, ensure_ascii=False, default=_json_default, allow_nan=False).encode(
        "utf-8"
    )
