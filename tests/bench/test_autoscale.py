"""bench.autoscale_model against hand-computed cases: KEDA's formula, the HPA's stabilisation
windows and scaling policies, the fluid queue's waits, and the shipped manifest it reads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.autoscale import KEDA
from bench.autoscale_model import (
    Group,
    Hpa,
    Policy,
    Rules,
    Scaling,
    average_value_replicas,
    effective_pods,
    keda_metric,
    oscillations,
    percentile_wait,
    scaling_from_keda,
    sigkill_stall,
    simulate,
    utilization_replicas,
    waits,
)

pytestmark = pytest.mark.unit


def scaling(up: Rules, down: Rules, *, low: int = 1, high: int = 12) -> Scaling:
    return Scaling("t", 600, 20, low, high, up, down)


def test_keda_desired_is_lag_over_threshold_capped_at_partitions() -> None:
    # 1,300 tickets of lag, threshold 600: ceil(1300 / 600) = 3
    assert average_value_replicas(keda_metric(1300, 600, 12), 600, 1) == 3
    # allowIdleConsumers=false: 100,000 tickets on 12 partitions counts as 12 x 600
    assert keda_metric(100_000, 600, 12) == 7200
    assert average_value_replicas(keda_metric(100_000, 600, 12), 600, 1) == 12
    # within the HPA's 10% tolerance: 2 replicas, 1,300 / (600 x 2) = 1.083 -> stay at 2
    assert average_value_replicas(1300, 600, 2) == 2
    # 1,350 / 1,200 = 1.125: outside it -> ceil(1350 / 600) = 3
    assert average_value_replicas(1350, 600, 2) == 3
    # no lag -> 0 (the HPA then holds minReplicas)
    assert average_value_replicas(0, 600, 3) == 0


def test_cpu_utilization_recommendation() -> None:
    # 4 pods at 100% against 70%: ceil(4 x 1.0 / 0.7) = ceil(5.71) = 6
    assert utilization_replicas(1.0, 0.7, 4) == 6
    # 75% against 70%: ratio 1.07, within tolerance
    assert utilization_replicas(0.75, 0.7, 4) == 4
    # 20% against 70%: ceil(4 x 0.2857) = 2
    assert utilization_replicas(0.2, 0.7, 4) == 2


def test_scale_down_takes_the_highest_recommendation_of_its_window() -> None:
    hpa = Hpa(
        scaling(Rules(0, (Policy("Pods", 4, 60),)), Rules(300, (Policy("Percent", 100, 15),)))
    )
    assert hpa.decide(0, 5, 1) == 5  # up at once: +4 pods allowed in the period, 1 -> 5
    # recommendations fall to 1, but 5 is in the 300 s window until t = 300
    assert hpa.decide(15, 1, 5) == 5
    assert hpa.decide(285, 1, 5) == 5
    # at t = 300 the recommendation made at t = 0 has left the window (strictly after cutoff)
    assert hpa.decide(300, 1, 5) == 1


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    hpa = Hpa(scaling(Rules(60, (Policy("Pods", 10, 15),)), Rules(0, (Policy("Pods", 10, 15),))))
    assert hpa.decide(0, 2, 2) == 2
    assert hpa.decide(15, 8, 2) == 2  # 2 (t = 0) is still in the 60 s up window
    assert hpa.decide(45, 8, 2) == 2
    assert hpa.decide(60, 8, 2) == 8  # only 8s left in (0, 60]


def test_scale_up_pods_policy_counts_from_the_period_start() -> None:
    # +4 pods per 60 s: 1 -> 5 at t = 0; at t = 30 the period started at 1, limit 5
    hpa = Hpa(scaling(Rules(0, (Policy("Pods", 4, 60),)), Rules(300, (Policy("Pods", 1, 120),))))
    assert hpa.decide(0, 12, 1) == 5
    assert hpa.decide(30, 12, 5) == 5
    # at t = 60 the event at t = 0 is out of the period (strictly after now - 60): 5 + 4
    assert hpa.decide(60, 12, 5) == 9


def test_percent_and_pods_policies_select_the_larger_change() -> None:
    rules = Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
    hpa = Hpa(scaling(rules, Rules(0, (Policy("Pods", 1, 60),)), high=48))
    assert hpa.decide(0, 40, 1) == 5  # 1 x 200% = 2 < 1 + 4 = 5
    assert hpa.decide(15, 40, 5) == 10  # 5 x 200% = 10 > 5 + 4 = 9
    assert hpa.decide(30, 40, 10) == 20
    assert hpa.decide(45, 40, 20) == 40
    # down: one pod per 60 s, counted from the count at the period's start
    assert hpa.decide(200, 1, 40) == 39
    assert hpa.decide(215, 1, 39) == 39
    assert hpa.decide(260, 1, 39) == 38


def test_scale_down_period_start_counts_the_pods_added_in_it() -> None:
    # Kubernetes: period start = current - added + deleted in the period. 5 pods added 30 s
    # ago -> the period started at 1 pod: 1 - 1 = 0 -> minReplicas 1, a drop of 5 at once
    # (what a scale-down window longer than the policies' periods prevents).
    hpa = Hpa(scaling(Rules(0, (Policy("Pods", 5, 15),)), Rules(0, (Policy("Pods", 1, 60),))))
    assert hpa.decide(0, 6, 1) == 6
    assert hpa.decide(30, 1, 6) == 1


def test_percent_scale_down_rounds_down_and_respects_min() -> None:
    hpa = Hpa(
        scaling(Rules(0, (Policy("Pods", 4, 15),)), Rules(0, (Policy("Percent", 50, 60),)), low=2)
    )
    assert hpa.decide(0, 0, 7) == 3  # int(7 x 0.5) = 3
    assert hpa.decide(60, 0, 3) == 2  # int(1.5) = 1, but minReplicas 2


def test_effective_pods_is_limited_by_the_busiest_member() -> None:
    assert effective_pods(5, 12) == 4  # one member has 3 of 12 partitions
    assert effective_pods(6, 12) == 6
    assert effective_pods(7, 12) == 6
    assert effective_pods(20, 12) == 12
    assert effective_pods(0, 12) == 0


def test_fluid_queue_waits() -> None:
    # 10 tickets in second 0, labelled 5 a second: the middle ticket (5th) is done at t = 1
    wait, weight = waits(np.array([10.0, 0, 0, 0]), np.array([5.0, 5, 0, 0]))
    assert wait[0] == pytest.approx(0.5)
    assert weight[0] == 10
    # never labelled -> infinite wait
    wait, _ = waits(np.array([1.0, 0]), np.array([0.0, 0]))
    assert math.isinf(wait[0])
    assert percentile_wait(np.array([0.0, 10.0]), np.array([99.0, 1.0]), 0.99) == 0.0
    assert percentile_wait(np.array([0.0, 10.0]), np.array([98.0, 2.0]), 0.99) == 10.0


def test_oscillations_count_down_then_up() -> None:
    assert oscillations([(0, 1, 4), (300, 4, 3), (400, 3, 2)]) == 0
    assert oscillations([(0, 1, 4), (300, 4, 3), (400, 3, 5), (900, 5, 4)]) == 1


def test_simulated_backlog_scales_up_after_cold_start_and_drains() -> None:
    s = Scaling(
        "t", 100, 10, 1, 4, Rules(0, (Policy("Pods", 4, 15),)), Rules(300, (Policy("Pods", 1, 60),))
    )
    group = Group(rate=10, partitions=4, cold_start_s=10, join_pause_s=1, leave_pause_s=2)
    arrivals = np.zeros(900)
    arrivals[0] = 1000  # a backlog of 1,000 at t = 0
    run = simulate(arrivals, s, group)
    assert run.actions[0] == (0, 1, 4)  # ceil(990 / 100) = 10, capped at 4 (max)
    assert run.members[9] == 1 and run.members[10] == 4
    # 10 s at 10/s, then one 1 s pause, then 40/s: 1000 - 100 = 900 left -> 22.5 s more
    assert int(np.argmax(run.lag == 0)) == 33
    assert run.rebalances >= 2  # the join, and a leave once scaled down
    assert run.pods[-1] == 1


def test_shipped_manifest_is_read() -> None:
    shipped = scaling_from_keda(KEDA)
    assert shipped.lag_threshold > 0 and shipped.min_replicas >= 1
    assert shipped.cpu_trigger is not None
    assert shipped.up.policies and shipped.down.policies


def test_sigkill_stall_of_the_dead_members_partitions() -> None:
    common = {
        "rate": 10.0,
        "partitions": 4,
        "members": 2,
        "load": 0.5,
        "leave_pause_s": 2.0,
        "join_pause_s": 1.0,
    }
    late = sigkill_stall(detect_s=10, restart_s=30, static=False, **common)
    assert late["dead_partitions_stall_s"] == 12  # timeout + leave pause
    early = sigkill_stall(detect_s=30, restart_s=10, static=False, **common)
    # the replacement's join waits for the dead member: the whole group stops 10 -> 32 s
    assert early["dead_partitions_stall_s"] == 32
    assert early["whole_group_paused_s"] == 22
    static = sigkill_stall(detect_s=30, restart_s=10, static=True, **common)
    assert static["dead_partitions_stall_s"] == 10 and static["whole_group_paused_s"] == 0
    assert static["all_p99_wait_s"] < early["all_p99_wait_s"]
