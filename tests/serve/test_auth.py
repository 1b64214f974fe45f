"""The API's token table: the file format, its errors (never echoing a token), lookups."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from ticketflow.serve.auth import TokenFileError, TokenTable, is_loopback
from ticketflow.serve.schemas import WHITESPACE

pytestmark = pytest.mark.unit

PLAIN = "desk-token-0123456789abcdef"
HASHED = "other-token-0123456789abcdef"


def test_plain_and_hashed_entries_comments_and_blank_lines() -> None:
    digest = hashlib.sha256(HASHED.encode()).hexdigest()
    table = TokenTable.parse(
        [
            "# review desk",
            "",
            f"desk:{PLAIN}",
            f"  bot:sha256:{digest.upper()}  ",
            f"desk:{'n' * 20}",
        ]
    )
    assert table.caller(PLAIN) == "desk"
    assert table.caller(HASHED) == "bot"
    assert table.caller("n" * 20) == "desk"  # two tokens for one name while rotating
    assert table.caller("wrong-token-0123456789") is None
    assert table.caller("") is None
    assert table.names == ["bot", "desk"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (f"no-separator{PLAIN}", "expected name:token"),
        (f":{PLAIN}", "expected name:token"),
        (f"bad name:{PLAIN}", "expected name:token"),
        ("desk:short-secret", "at least 16"),
        (f"desk:{PLAIN} trailing", "without spaces"),
        ("desk:sha256:abc123", "64 hex digits"),
    ],
)
def test_a_malformed_line_names_its_number_and_never_the_token(line: str, says: str) -> None:
    with pytest.raises(TokenFileError) as caught:
        TokenTable.parse(["# comment", f"fine:{'f' * 20}", line], source="tokens.txt")
    message = str(caught.value)
    assert "tokens.txt line 3" in message and says in message
    assert PLAIN not in message and "short-secret" not in message and "abc123" not in message


def test_the_same_token_twice_is_refused() -> None:
    with pytest.raises(TokenFileError, match="line 2: the same token as line 1"):
        TokenTable.parse([f"a:{PLAIN}", f"b:{PLAIN}"])


def test_an_empty_or_missing_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nothing yet\n")
    with pytest.raises(TokenFileError, match="no tokens"):
        TokenTable.load(empty)
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenTable.load(tmp_path / "absent")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
        ("testclient", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_schemas_whitespace_is_pythons() -> None:
    # The OpenAPI patterns spell out what str.strip() removes; a new Python could add some.
    python = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert python == WHITESPACE
