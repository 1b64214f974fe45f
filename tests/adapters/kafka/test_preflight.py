"""The broker preflight: an absent broker is one readable error within seconds."""

from __future__ import annotations

import logging
import time

import pytest

from tests.cli.test_unreachable_broker import closed_port
from ticketflow.adapters.kafka import errors
from ticketflow.adapters.kafka.preflight import BrokerUnreachableError, check_broker

pytestmark = pytest.mark.unit


def test_refused_connection_fails_after_the_grace_not_the_timeout() -> None:
    servers = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnreachableError) as caught:
        check_broker({"bootstrap.servers": servers}, timeout_s=8.0, hint="do this")
    seconds = time.monotonic() - started
    message = str(caught.value)
    assert seconds < 4.0  # the grace (1 s) and a metadata slice, far from the 8 s timeout
    assert "\n" not in message
    assert servers in message and "Connection refused" in message
    assert "after 0ms" not in message  # librdkafka's state tail is dropped
    assert message.endswith(": do this")


def test_the_default_hint_names_the_setting() -> None:
    with pytest.raises(BrokerUnreachableError, match="KAFKA_BOOTSTRAP_SERVERS"):
        check_broker({"bootstrap.servers": f"127.0.0.1:{closed_port()}"}, timeout_s=3.0)


def test_without_a_grace_it_waits_for_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnreachableError):
        check_broker(
            {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}, timeout_s=1.5, down_grace_s=60
        )
    assert 1.4 <= time.monotonic() - started < 4.0


def test_librdkafka_lines_stay_out_of_stderr(
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The relay is shared by the process: forget lines an earlier test had it log.
    monkeypatch.setattr(errors.LIBRDKAFKA_LOG, "_dedup", errors.Deduplicator())
    caplog.set_level(logging.DEBUG, logger="ticketflow.adapters.kafka")
    with pytest.raises(BrokerUnreachableError):
        check_broker({"bootstrap.servers": f"127.0.0.1:{closed_port()}"}, timeout_s=2.0)
    assert "|FAIL|" not in capfd.readouterr().err
    failures = [r for r in caplog.records if "librdkafka" in r.getMessage()]
    assert failures and all(r.levelno == logging.DEBUG for r in failures)
