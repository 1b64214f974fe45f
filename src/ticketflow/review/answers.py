"""A person's answer to a held ticket, checked before it becomes a ``LabelFeedback``.

A label is plain text: 1 to 200 characters once stripped, no control characters (a label ends
up in routing rules, pages and metrics). A label the served model does not know is a *new*
label (a queue that did not exist when it was trained); it is refused when it differs from a
known class only by case or spaces, which is a typo of that class, not a new one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.ticket import SURROGATE

MAX_LABEL_CHARS = 200
MAX_COMMENT_CHARS = 2_000
# Control characters, and the invisible ones that make two labels look the same (zero-width
# spaces and joiners, direction marks and overrides, the BOM, the soft hyphen). Spelt out as a
# class of escapes (text, not the characters) so the OpenAPI document's ECMA pattern says the
# same (serve/schemas.py).
HIDDEN = r"\x00-\x1f\x7f-\x9f\xad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff"
_HIDDEN = re.compile(f"[{HIDDEN}]")


class AnswerError(ValueError):
    """An answer that cannot be published; the message says what to change."""


def _folded(label: str) -> str:
    return " ".join(label.casefold().split())


def clean_label(target: str, label: str, known: Sequence[str]) -> str:
    text = label.strip()
    if not text:
        raise AnswerError(f"{target}: the label is empty")
    if len(text) > MAX_LABEL_CHARS:
        raise AnswerError(f"{target}: a label has at most {MAX_LABEL_CHARS} characters")
    if _HIDDEN.search(text) or SURROGATE.search(text):
        raise AnswerError(
            f"{target}: a label is plain text, without control or invisible characters"
        )
    if text not in known:
        twin = next((k for k in known if _folded(k) == _folded(text)), None)
        if twin is not None:
            raise AnswerError(f"{target}: {text!r} is the known label {twin!r} spelt differently")
    return text


def answer(
    ticket_id: str,
    labels: Mapping[str, str],
    *,
    known: Mapping[str, Sequence[str]],
    corrected_by: str,
    comment: str | None = None,
) -> LabelFeedback:
    """The ``LabelFeedback`` of a person's ``labels`` (target -> label) for ``ticket_id``.

    ``known``: the served model's classes per target; a target outside it is refused."""
    if not labels:
        raise AnswerError("no labels: give at least one target's label")
    unknown = sorted(set(labels) - set(known))
    if unknown:
        raise AnswerError(
            f"{unknown[0][:80]!r} is not a target of the served model ({', '.join(known)})"
        )
    cleaned = {
        target: clean_label(target, label, known[target]) for target, label in labels.items()
    }
    note = (comment or "").strip() or None
    if note is not None and len(note) > MAX_COMMENT_CHARS:
        raise AnswerError(f"comment: at most {MAX_COMMENT_CHARS} characters")
    try:
        return LabelFeedback(
            ticket_id=ticket_id, labels=cleaned, corrected_by=corrected_by, comment=note
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "answer"
        raise AnswerError(f"{where}: {first['msg']}") from exc
