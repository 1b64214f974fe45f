"""Numbers on the command line, checked as the settings are: one rule, one message, exit 2.

An option that overrides a setting (``--review-precision`` for REVIEW_PRECISION) takes its
type and range from that setting's pydantic Field, so the command line cannot accept what
the environment refuses; the other numbers name their range here. Both are validated by
pydantic, so a bad value reads the same wherever it came from.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from ticketflow.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["COUNT", "POSITIVE", "SEED", "number", "setting"]

Parse = Callable[[str], Any]


def _checked(adapter: TypeAdapter[Any], *, source: str | None = None) -> Parse:
    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            reason = exc.errors(include_url=False)[0]["msg"]
            shown = f"bad value {text!r}" + (f" (as {source})" if source else "")
            raise argparse.ArgumentTypeError(f"{shown}: {reason}") from None

    return parse


def setting(name: str) -> Parse:
    """The argparse ``type`` of an option that overrides the setting ``name``: its Field's
    type and constraints, and the message the environment's value would get."""
    field = Settings.model_fields[name]
    annotated: Any = Annotated.__class_getitem__((field.annotation, *field.metadata))  # type: ignore[attr-defined]
    return _checked(TypeAdapter(annotated), source=name.upper())


def number(
    kind: type[int] | type[float],
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Parse:
    """The argparse ``type`` of a number with a range and no setting behind it."""
    annotated: Any = Annotated[kind, Field(gt=gt, ge=ge, lt=lt, le=le)]
    return _checked(TypeAdapter(annotated))


# The numbers most commands share.
COUNT = number(int, ge=1)  # --limit, --window, --max …: at least one
SEED = number(int, ge=0)
POSITIVE = number(float, gt=0)  # --c, --rate, --timeout
