"""Progress: a bar on a terminal, a log line per tenth in log files."""

from __future__ import annotations

import io
import logging

import pytest

from ticketflow.data.progress import LogProgress, progress

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ticketflow.data.progress"]


def test_without_a_terminal_it_logs_each_tenth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticketflow.data.progress")
    stream = io.StringIO()
    bar = progress(range(1000), desc="loading t.csv", stream=stream)
    assert isinstance(bar, LogProgress)
    assert list(bar) == list(range(1000))
    messages = logged(caplog)
    assert messages[3] == "loading t.csv: 40% (400/1000)"
    assert [m.split(": ")[1].split("%")[0] for m in messages] == [
        str(p) for p in range(10, 101, 10)
    ]
    assert stream.getvalue() == ""  # nothing written where a bar would go


def test_update_by_hand_and_big_steps(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticketflow.data.progress")
    bar = progress(7, desc="embedding", stream=io.StringIO())
    bar.update(3)  # 42%: one line, not four
    bar.update(4)
    bar.close()
    assert logged(caplog) == ["embedding: 42% (3/7)", "embedding: 100% (7/7)"]


def test_unknown_total_logs_the_count_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticketflow.data.progress")
    assert sum(progress((i for i in range(5)), desc="gen", stream=io.StringIO())) == 10
    assert logged(caplog) == ["gen: 5 done"]


def test_disabled_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticketflow.data.progress")
    assert list(progress([1, 2], desc="x", disable=True, stream=io.StringIO())) == [1, 2]
    assert logged(caplog) == []


def test_a_terminal_gets_a_tqdm_bar(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticketflow.data.progress")
    terminal = Terminal()
    bar = progress(range(20), desc="bar", stream=terminal)
    assert not isinstance(bar, LogProgress)
    assert sum(bar) == 190
    bar.close()
    assert "bar: 100%" in terminal.getvalue() and logged(caplog) == []


def test_library_bars_only_on_a_terminal() -> None:
    import io

    from ticketflow.data.progress import on_terminal

    assert on_terminal(io.StringIO()) is False  # a log file or a pipe: no tqdm bar
