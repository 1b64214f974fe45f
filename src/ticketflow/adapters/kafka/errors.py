"""Fail fast on errors that retrying cannot fix (wrong credentials, bad TLS setup).

librdkafka reports those through ``error_cb`` and keeps retrying forever; a CLI or an admin
call would hang until its timeout with nothing said. :class:`ErrorTrap` records them so the
caller can raise a readable error within seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import KafkaError

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


class KafkaSetupError(RuntimeError):
    """The client cannot work with this configuration (credentials, TLS, mechanism)."""


class ErrorTrap:
    """An ``error_cb`` for confluent-kafka clients that remembers the first fatal setup error."""

    def __init__(self) -> None:
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() in FATAL_CODES or error.fatal():
            if self.error is None:
                logger.error("Kafka client error: %s", error.str())
            self.error = self.error or error
        else:
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
    """A copy of ``config`` with an :class:`ErrorTrap` as its ``error_cb``."""
    trap = ErrorTrap()
    callback: Callable[[KafkaError], None] = trap
    return {**config, "error_cb": callback}, trap
