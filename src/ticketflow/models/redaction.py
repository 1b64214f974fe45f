"""Mask personal data in ticket text before it is stored anywhere outside Kafka."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
# 13-19 digits, optionally grouped by spaces or dashes: card numbers (and IBAN-like runs).
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# International or local phone numbers: an optional +, then 7-15 digits with separators.
_PHONE = re.compile(r"(?<![\w@])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?!\w)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./]\d{2}[./]\d{4}")


def _phone(match: re.Match[str]) -> str:
    found = match.group()
    if _DATE.fullmatch(found.strip()) or sum(c.isdigit() for c in found) < 7:
        return found
    return "[phone]"


def redact(text: str) -> str:
    """Replace e-mail addresses, card-like numbers and phone numbers with placeholders."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub(_phone, text)


def stored_documents(texts: list[str], policy: str) -> list[str] | None:
    """The documents kept in the vector store for ``texts`` under ``CHROMA_DOCUMENT``:
    ``full`` keeps the model text, ``redacted`` masks it (:func:`redact`), ``none`` keeps
    nothing (no retraining from the store)."""
    if policy == "full":
        return texts
    if policy == "redacted":
        return [redact(text) for text in texts]
    return None
