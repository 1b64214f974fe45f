"""Interleaved A/B timing for the benchmarks that compare variants of one path.

On this project's shared 2-core machine a path's speed drifts 10-30% over minutes, so the
variants are timed in turn, the order rotated every round, and each variant is compared with
the first one within the same round only. The CPU time of the process (all its threads) is
kept beside the wall clock: when other jobs load the machine it moves far less.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class Timings(Generic[K]):
    """Per variant, tickets/s and CPU ms per ticket, one value per round."""

    names: list[K]
    rates: dict[K, list[float]] = field(default_factory=dict)
    cpu_ms: dict[K, list[float]] = field(default_factory=dict)

    def add(self, name: K, rate: float, cpu_ms: float) -> None:
        self.rates.setdefault(name, []).append(rate)
        self.cpu_ms.setdefault(name, []).append(cpu_ms)

    def summary(self, label: Callable[[K], str]) -> list[str]:
        """One line per variant: median rate, its ratio to the first variant per round and
        their median, and the first variant's CPU per ticket over this one's."""
        base = self.names[0]
        lines = []
        for name in self.names:
            ratios = [a / b for a, b in zip(self.rates[name], self.rates[base], strict=True)]
            cpu = [b / a for a, b in zip(self.cpu_ms[name], self.cpu_ms[base], strict=True)]
            lines.append(
                f"{label(name)}: median {statistics.median(self.rates[name]):.1f} tickets/s, "
                f"ratio to {label(base)} per round {[round(x, 3) for x in ratios]}, median "
                f"{statistics.median(ratios):.3f}; CPU ms/ticket "
                f"{statistics.median(self.cpu_ms[name]):.1f}, {label(base)}'s / this per round "
                f"{[round(x, 3) for x in cpu]}, median {statistics.median(cpu):.3f}"
            )
        return lines


def timed(work: Callable[[], object], n: int) -> tuple[float, float]:
    """Run ``work`` (``n`` tickets) once: tickets/s and CPU ms per ticket."""
    started, cpu = time.perf_counter(), time.process_time()
    work()
    return n / (time.perf_counter() - started), 1000 * (time.process_time() - cpu) / n


def interleave(
    names: Sequence[K], run: Callable[[K], tuple[float, float]], rounds: int
) -> Timings[K]:
    """``run(name)`` -> (tickets/s, CPU ms per ticket) for every name, ``rounds`` times, the
    order rotated each round; prints each round as it ends."""
    timings = Timings(list(names))
    for r in range(rounds):
        turn = [*names[r % len(names) :], *names[: r % len(names)]]
        for name in turn:
            timings.add(name, *run(name))
        print(
            f"round {r + 1} (order {turn}): "
            + ", ".join(
                f"{n}: {timings.rates[n][-1]:.1f}/s {timings.cpu_ms[n][-1]:.1f} ms" for n in names
            ),
            flush=True,
        )
    return timings
