"""Shared test configuration.

With ``TICKETFLOW_REQUIRE_INTEGRATION=1`` (set by ``make test`` and CI) the run fails when an
integration test was skipped or none ran: a green suite must mean the real broker was used.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.pipeline",
    "tests.fixtures.monitoring",
    "tests.fixtures.chroma",
]

_outcomes: dict[str, int] = {"integration_passed": 0, "integration_skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "integration" not in report.keywords:
        return
    if report.skipped:
        _outcomes["integration_skipped"] += 1
    elif report.when == "call" and report.passed:
        _outcomes["integration_passed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("TICKETFLOW_REQUIRE_INTEGRATION") != "1":
        return
    if _outcomes["integration_skipped"] or not _outcomes["integration_passed"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        passed, skipped = _outcomes["integration_passed"], _outcomes["integration_skipped"]
        print(
            f"\nTICKETFLOW_REQUIRE_INTEGRATION: {passed} integration tests passed, "
            f"{skipped} skipped: integration tests must run here"
        )
