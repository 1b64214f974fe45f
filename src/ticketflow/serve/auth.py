"""Who may call the HTTP API: named bearer tokens, read from a file (``SERVE_TOKENS_FILE``).

One entry per line, ``name:token`` or ``name:sha256:<64 hex>`` (the token's SHA-256, so a
Secret need not hold it in plain); blank lines and ``#`` comments are skipped. A name may have
several tokens (rotation: add the new one, move the clients, drop the old one). Only digests
are kept in memory; a token is never logged and a bad line is reported by its number only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# The caller of a service without tokens (loopback only).
LOCAL_CALLER = "local"
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # what fits an Authorization header unquoted


class TokenFileError(ValueError):
    """A tokens file that cannot be used; the message names the line, never the token."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class TokenTable:
    """Named SHA-256 digests of bearer tokens."""

    entries: tuple[tuple[str, bytes], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def names(self) -> list[str]:
        return sorted({name for name, _ in self.entries})

    def caller(self, token: str) -> str | None:
        """The name ``token`` belongs to, or None. Every entry is compared (constant time
        over digests), so the answer's timing does not tell how close a guess was."""
        wanted = digest(token)
        found: str | None = None
        for name, known in self.entries:
            if hmac.compare_digest(known, wanted) and found is None:
                found = name
        return found

    @classmethod
    def parse(cls, lines: Iterable[str], *, source: str = "tokens") -> TokenTable:
        entries: list[tuple[str, bytes]] = []
        seen: dict[bytes, int] = {}
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, secret = line.partition(":")
            where = f"{source} line {number}"
            if not sep or not _NAME.fullmatch(name):
                raise TokenFileError(
                    f"{where}: expected name:token or name:sha256:<hex>, the name made of "
                    "letters, digits and ._@- (at most 64)"
                )
            if secret.startswith("sha256:"):
                hexdigest = secret.removeprefix("sha256:").lower()
                if not _HEX_DIGEST.fullmatch(hexdigest):
                    raise TokenFileError(f"{where}: sha256: must be followed by 64 hex digits")
                value = bytes.fromhex(hexdigest)
            else:
                if len(secret) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(secret):
                    raise TokenFileError(
                        f"{where}: the token must be at least {MIN_TOKEN_CHARS} printable "
                        "ASCII characters without spaces"
                    )
                value = digest(secret)
            if value in seen:
                raise TokenFileError(f"{where}: the same token as line {seen[value]}")
            seen[value] = number
            entries.append((name, value))
        return cls(tuple(entries))

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(
                f"{path}: cannot read the tokens file ({exc.__class__.__name__})"
            ) from exc
        table = cls.parse(text.splitlines(), source=str(path))
        if not table:
            raise TokenFileError(f"{path}: no tokens in the file")
        return table


@dataclass(frozen=True)
class AuthConfig:
    """The API's callers: ``tokens`` (empty = loopback clients only, as the caller
    ``local``), and whether ``/metrics`` is open to anyone (Prometheus)."""

    tokens: TokenTable = TokenTable()
    metrics_public: bool = False


def is_loopback(host: str) -> bool:
    """An address (or ``localhost``) that only this machine reaches."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
