"""bench.rounds: the rotation of the variants and the ratios it prints."""

from __future__ import annotations

import pytest

from bench.rounds import interleave, timed

pytestmark = pytest.mark.unit


def test_each_round_rotates_the_order_and_ratios_are_within_a_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []
    speed = {"a": [100.0, 50.0], "b": [200.0, 100.0]}  # the machine halves its speed in round 2

    def run(name: str) -> tuple[float, float]:
        calls.append(name)
        return speed[name][len([c for c in calls if c == name]) - 1], 10.0

    timings = interleave(["a", "b"], run, rounds=2)
    assert calls == ["a", "b", "b", "a"]
    lines = timings.summary(str)
    # b is twice a in each round, although its second-round speed equals a's first.
    assert "ratio to a per round [2.0, 2.0], median 2.000" in lines[1]
    assert "median 1.000" in lines[0]
    assert "round 2 (order ['b', 'a'])" in capsys.readouterr().out


def test_timed_counts_tickets_per_second_and_cpu_per_ticket() -> None:
    rate, cpu_ms = timed(lambda: sum(i * i for i in range(200_000)), 100)
    assert rate > 0
    assert cpu_ms > 0
