import pytest

from ticketflow.models.redaction import redact

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+x@example.co.uk please", "mail me at [email] please"),
        ("card 4111 1111 1111 1111 was charged", "card [card] was charged"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("call +49 30 1234 5678 today", "call [phone] today"),
        ("call (555) 123-4567", "call [phone]"),
        ("order 12345 and version 2.3.1 stay", "order 12345 and version 2.3.1 stay"),
        ("since 2024-01-05 on port 8080", "since 2024-01-05 on port 8080"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
