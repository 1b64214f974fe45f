"""``--since``: the one grammar of a point in time a user hands to a command.

``ticketflow dlq list|show|replay --since`` and ``ticketflow report performance --since``
read it the same way (before, each command had its own parser and each accepted a little
less than the other). Only the standard library: the CLI parses the option without
importing the batch jobs.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from ticketflow.data.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["SINCE_HELP", "parse_since"]

# An age back from now: a number (decimals allowed, e.g. 1.5h) and one unit letter; blanks
# around and between are tolerated, as both former parsers did.
_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# The grammar in one sentence, for the commands' --help.
SINCE_HELP = (
    "an ISO 8601 date or time (2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00+01:00; UTC "
    "unless it has a zone) or an age back from now: a number and s, m, h, d or w (90s, 30m, "
    "24h, 1.5h, 7d, 2w)"
)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The time ``text`` names, timezone-aware.

    Grammar (the union of what ``ticketflow dlq`` and ``ticketflow report performance``
    accepted before they shared this parser)::

        since := age | iso
        age   := NUMBER UNIT          NUMBER: digits, optionally with a decimal part (1.5)
        UNIT  := s | m | h | d | w    seconds, minutes, hours, days, weeks
        iso   := anything datetime.fromisoformat reads: 2026-11-01, 2026-11-01T08:00,
                 2026-11-01 08:00:30, 2026-11-01T08:00+01:00, ...

    Blanks around the text and between number and unit are ignored. An age counts back from
    ``now`` (the current time when None); an ISO time without a zone is UTC.

    Raises :class:`~ticketflow.data.errors.InputError` (a ``ValueError``) naming the text and
    the accepted forms for anything else, e.g. ``yesterday``, ``-2h`` or an empty string.
    """
    match = _AGE.fullmatch(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--since {text!r}: use an ISO 8601 date or time (2026-11-01, 2026-11-01T08:00; "
            "UTC unless it has a zone) or an age back from now (90s, 30m, 24h, 7d, 2w)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
