"""librdkafka's log lines in Python logging: deduplicated, DEBUG unless they matter."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.cli.test_unreachable_broker import closed_port
from ticketflow.adapters.kafka.clients import DeliveryError, produce_events
from ticketflow.adapters.kafka.errors import (
    LIBRDKAFKA_LOG,
    Deduplicator,
    ErrorTrap,
    LibrdkafkaLog,
    trapped,
)

pytestmark = pytest.mark.unit

FAIL_LINE = (
    "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 "
    "failed: Connection refused (after {}ms in state CONNECT)"
)


def relay() -> tuple[LibrdkafkaLog, logging.Logger]:
    target = logging.getLogger("tests.librdkafka")
    target.setLevel(logging.DEBUG)
    return LibrdkafkaLog(target), target


def test_connection_failures_go_to_debug_once(caplog: pytest.LogCaptureFixture) -> None:
    log, _ = relay()
    caplog.set_level(logging.DEBUG, logger="tests.librdkafka")
    for ms in range(50):  # as confluent-kafka calls it: syslog 3 maps to ERROR
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", FAIL_LINE.format(ms))
    assert [(r.levelno, "Connection refused" in r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, True)
    ]


def test_other_warnings_keep_their_level(caplog: pytest.LogCaptureFixture) -> None:
    log, _ = relay()
    caplog.set_level(logging.DEBUG, logger="tests.librdkafka")
    log.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "unknown key")
    log.log(logging.INFO, "%s [%s] %s", "INIT", "rdkafka#producer-1", "started")
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]


def test_repeats_are_counted_when_the_window_has_passed() -> None:
    dedup = Deduplicator(window_s=10.0)
    assert dedup.admit("a 1", now=0.0) == 0
    assert dedup.admit("a 2", now=1.0) is None
    assert dedup.admit("a 3", now=2.0) is None
    assert dedup.admit("b", now=3.0) == 0
    assert dedup.admit("a 4", now=11.0) == 2


def test_trapped_adds_the_relay_and_keeps_a_callers_logger() -> None:
    config, trap = trapped({"bootstrap.servers": "x"})
    assert config["logger"] is LIBRDKAFKA_LOG and config["error_cb"] is trap
    own = logging.getLogger("mine")
    assert trapped({"logger": own})[0]["logger"] is own
    assert isinstance(trap, ErrorTrap) and trap.transient is None


def test_a_producer_without_a_broker_prints_no_raw_librdkafka_lines(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}", "message.timeout.ms": "1500"}
    with pytest.raises(DeliveryError):
        produce_events(config, "tickets", [{"ticket_id": "T-1", "body": "x"}], progress=False)
    err = capfd.readouterr().err
    assert "|FAIL|" not in err and "rdkafka#producer" not in err, err[:500]
