"""Fail fast on errors that retrying cannot fix (wrong credentials, bad TLS setup), and keep
librdkafka's own log lines in Python logging.

librdkafka reports those errors through ``error_cb`` and keeps retrying forever; a CLI or an
admin call would hang until its timeout with nothing said. :class:`ErrorTrap` records them so
the caller can raise a readable error within seconds.

Left alone, librdkafka prints every connection failure to stderr itself, many per second while
a broker is away. :class:`LibrdkafkaLog` (the ``logger`` key :func:`trapped` adds) takes those
lines instead: repeats are dropped, and transient connection trouble goes to DEBUG, because
the caller reports it once and better (a preflight check, a timeout, a delivery error).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

logger = logging.getLogger(__name__)

T = TypeVar("T")

FATAL_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._SSL,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
    }
)


# librdkafka facilities of trouble it retries by itself (connections, a coordinator that is
# still loading); lasting failures reach error_cb, so these lines add nothing above DEBUG.
TRANSIENT_FACILITIES = frozenset(
    {
        "FAIL",
        "ERROR",
        "BROKERFAIL",
        "CONNECT",
        "DISCONNECT",
        "REQTMOUT",
        "RESOLVE",
        "TIMEOUT",
        "GETPID",
    }
)
# Variable parts of a line (timings, counts, addresses' ports) that must not defeat the
# duplicate check: "after 0ms" and "after 1ms" are the same failure.
_NUMBERS = re.compile(r"\d+")


class Deduplicator:
    """Says whether a line is new, or repeats one seen within ``window_s`` (then: how many
    repeats were held back, reported with the next line let through)."""

    def __init__(self, window_s: float = 60.0, max_keys: int = 1024) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last let through, held back)
        self._lock = threading.Lock()

    def admit(self, text: str, now: float | None = None) -> int | None:
        """None: drop this line; else the number of repeats dropped since it last passed."""
        key = _NUMBERS.sub("#", text)
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window_s:
                self._seen[key] = (entry[0], entry[1] + 1)
                return None
            if len(self._seen) >= self.max_keys:
                # Bounded memory in a long-running worker; forgetting only risks a repeat.
                self._seen.clear()
            self._seen[key] = (now, 0)
            return entry[1] if entry is not None else 0


class LibrdkafkaLog:
    """The ``logger`` of a confluent-kafka client: librdkafka's lines into Python logging.

    confluent-kafka calls ``log(level, "%s [%s] %s", facility, client name, message)``. Lines
    below WARNING and transient connection trouble (:data:`TRANSIENT_FACILITIES`) go to DEBUG;
    others keep their level. A line repeating one seen within a minute is dropped.
    """

    def __init__(self, target: logging.Logger | None = None, window_s: float = 60.0) -> None:
        self.target = target or logging.getLogger(f"{__name__}.librdkafka")
        self._dedup = Deduplicator(window_s)

    def log(self, level: int, msg: str, *args: object) -> None:
        facility = str(args[0]) if args else ""
        if level < logging.WARNING or facility in TRANSIENT_FACILITIES:
            level = logging.DEBUG
        if not self.target.isEnabledFor(level):
            return
        text = msg % args if args else msg
        repeats = self._dedup.admit(text)
        if repeats is None:
            return
        suffix = f" (and {repeats} repeats)" if repeats else ""
        self.target.log(level, "librdkafka %s%s", text, suffix)


# One for every client of the process: an admin client and a producer made for one command
# fail in the same way, and their lines are the same.
LIBRDKAFKA_LOG = LibrdkafkaLog()


# What a client call raises when the broker refuses or fails it, for callers outside this
# package (which do not import confluent_kafka themselves).
KafkaClientError = KafkaException


class KafkaSetupError(RuntimeError):
    """The client cannot work with this configuration (credentials, TLS, mechanism)."""


class ErrorTrap:
    """An ``error_cb`` for confluent-kafka clients that remembers the first fatal setup error."""

    def __init__(self) -> None:
        self.error: KafkaError | None = None
        # The latest error librdkafka retries by itself (e.g. a refused connection), for a
        # caller that gives up to say why; and whether every broker was down at some point.
        self.transient: KafkaError | None = None
        self.all_brokers_down = False
        self._dedup = Deduplicator()

    def __call__(self, error: KafkaError) -> None:
        if error.code() in FATAL_CODES or error.fatal():
            if self.error is None:
                logger.error("Kafka client error: %s", error.str())
            self.error = self.error or error
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_brokers_down = True
        else:
            self.transient = error
        if logger.isEnabledFor(logging.DEBUG) and self._dedup.admit(error.str()) is not None:
            logger.debug("Kafka client error (retried): %s", error.str())

    def check(self) -> None:
        if self.error is not None:
            raise KafkaSetupError(
                f"Kafka refused the connection: {self.error.str()}. Check "
                "KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (and the TLS files)."
            )

    def wait(
        self, future: Future[T], timeout: float, poll: Callable[[float], Any] | None = None
    ) -> T:
        """``future.result(timeout)``, but raise at once when a fatal error is trapped.

        ``poll`` serves the client's callbacks (an AdminClient only runs ``error_cb`` there).
        """
        deadline = time.monotonic() + timeout
        while True:
            if poll is not None:
                poll(0)
            self.check()
            left = deadline - time.monotonic()
            try:
                return future.result(timeout=max(0.0, min(0.25, left)))
            except TimeoutError:
                if left <= 0:
                    raise


def trapped(config: Mapping[str, Any]) -> tuple[dict[str, Any], ErrorTrap]:
    """A copy of ``config`` with an :class:`ErrorTrap` as its ``error_cb`` and, unless it has
    one, :data:`LIBRDKAFKA_LOG` as its ``logger``."""
    trap = ErrorTrap()
    callback: Callable[[KafkaError], None] = trap
    return {"logger": LIBRDKAFKA_LOG, **config, "error_cb": callback}, trap
