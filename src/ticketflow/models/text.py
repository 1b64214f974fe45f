"""Turn a ticket into the one text the encoder sees, for training and streaming alike."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence

from ticketflow.schemas import Ticket

_BREAKS = re.compile(r"<\s*/?\s*(?:br|p|div|li|tr|h[1-6])\b[^>]{0,200}>", re.IGNORECASE)
_MARKUP = re.compile(r"<[^>]{0,200}>")
_LITERAL_ESCAPES = re.compile(r"\\[nrt]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")
ELLIPSIS = " …"


def clean_text(text: str | None) -> str:
    """Normalise one field: unicode form, entities and markup, escaped newlines, whitespace."""
    if not text:
        return ""
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    text = _BREAKS.sub("\n", text)
    text = _MARKUP.sub(" ", text)
    # Exports from help desks often carry the two characters "\n" instead of a newline.
    text = _LITERAL_ESCAPES.sub("\n", text)
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n", text)
    return text.strip()


def tags_line(tags: Sequence[str]) -> str:
    """The tags assembled into one column, e.g. ``Tags: billing, refund``."""
    cleaned = [t for t in (clean_text(tag) for tag in tags) if t]
    return f"Tags: {', '.join(cleaned)}" if cleaned else ""


def _truncate(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    if budget <= len(ELLIPSIS):
        return ""
    cut = text[: budget - len(ELLIPSIS)]
    # Cut at a word boundary when one is reasonably close, so no half-words reach the tokenizer.
    space = cut.rfind(" ")
    if space > len(cut) * 0.8:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def build_text(ticket: Ticket, *, max_chars: int = 1_000) -> str:
    """Subject, body and tags as one text of at most ``max_chars`` characters.

    The encoder only reads its first ~256 tokens, so a long body is shortened first: the
    subject and the tags carry the most label signal per character and must survive.
    """
    subject = clean_text(ticket.subject)
    body = clean_text(ticket.body)
    tags = tags_line(ticket.tags)
    head = [part for part in (subject,) if part]
    tail = [tags] if tags else []
    fixed = sum(len(p) + 1 for p in head + tail)
    if body:
        body = _truncate(body, max(0, max_chars - fixed))
    parts = [*head, *([body] if body else []), *tail]
    return _truncate("\n".join(parts), max_chars)


def build_texts(tickets: Sequence[Ticket], *, max_chars: int = 1_000) -> list[str]:
    return [build_text(t, max_chars=max_chars) for t in tickets]
