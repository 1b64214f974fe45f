"""The autoscaling simulation's core: KEDA's kafka scaler, the HPA's behaviour, a fluid queue.

Pure functions and small state machines, no I/O but reading the manifests
(``scaling_from_keda`` / ``scaling_from_hpa``): ``bench.autoscale`` drives them over traces,
``tests/bench/test_autoscale.py`` checks them against hand-computed cases.

What is modelled, each as Kubernetes v1.33 and KEDA 2.x do it:

- KEDA's kafka scaler (``allowIdleConsumers: false``): the metric is the group's total lag,
  capped at ``partitions x lagThreshold``; the HPA it drives has one External metric with an
  ``AverageValue`` target of ``lagThreshold``: desired = ceil(lag / lagThreshold), unless the
  usage ratio lag / (lagThreshold x current) is within the HPA's 10% tolerance (then current).
  With ``minReplicaCount: 0`` KEDA itself scales 0 -> 1 when lag > activationLagThreshold at a
  poll and 1 -> 0 after ``cooldownPeriod`` without.
- The HPA (``pkg/controller/podautoscaler``): every sync (15 s) the raw recommendation is
  stored; scale-up takes the *lowest* recommendation of the up window, scale-down the
  *highest* of the down window; then each direction's policies limit the change against the
  replica count at the start of each policy's period (``Pods``: +- value, ``Percent``:
  ceil(start x (1 + v/100)) up, floor(start x (1 - v/100)) down; ``selectPolicy: Max`` takes
  the policy allowing the larger change), then min/max replicas.
- The worker group: a new pod labels after ``cold_start_s``; each membership change (a pod
  joining, a pod leaving) pauses the whole group for the measured rebalance pause. With R
  members on P partitions the member holding ceil(P/R) partitions is the bottleneck of an
  evenly spread backlog: the group drains at P / ceil(P/R) pods' rate.
- The queue is fluid and FIFO over the whole topic (1 s steps); a ticket's wait is the time
  from its arrival until the group has labelled everything before it (queueing only: the
  worker's own 0.2-0.4 s batch latency comes on top).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

FloatArray = npt.NDArray[np.float64]

HPA_SYNC_S = 15  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
HPA_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True)
class Policy:
    kind: Literal["Pods", "Percent"]
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    """One direction of an HPA's ``behavior``."""

    window_s: int
    policies: tuple[Policy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"


# Kubernetes' defaults when ``behavior`` leaves a direction out.
DEFAULT_UP = Rules(0, (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_DOWN = Rules(300, (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Scaling:
    """What an operator sets: the ScaledObject (or HPA) and its behaviour."""

    name: str
    lag_threshold: float
    activation_lag_threshold: float
    min_replicas: int
    max_replicas: int
    up: Rules = DEFAULT_UP
    down: Rules = DEFAULT_DOWN
    polling_s: int = 15
    cooldown_s: int = 300
    metric: Literal["lag", "cpu"] = "lag"
    cpu_target: float = 0.7  # for metric="cpu": averageUtilization / 100
    cpu_trigger: float | None = None  # metric="lag" with a second (cpu) trigger: its target


@dataclass(frozen=True)
class Group:
    """What was measured: one pod's rate and what a membership change costs."""

    rate: float  # tickets/s of one pod (one encoder thread, 1 CPU)
    partitions: int
    cold_start_s: float = 10.0
    join_pause_s: float = 0.7
    leave_pause_s: float = 2.3


def _rules(found: dict[str, Any] | None, default: Rules) -> Rules:
    if not found:
        return default
    policies = tuple(
        Policy(p["type"], int(p["value"]), int(p["periodSeconds"]))
        for p in found.get("policies") or []
    )
    return Rules(
        int(found.get("stabilizationWindowSeconds", default.window_s)),
        policies or default.policies,
        found.get("selectPolicy", "Max"),
    )


def scaling_from_keda(path: Path, name: str = "shipped (KEDA)") -> Scaling:
    """The settings of a KEDA ScaledObject manifest: a kafka trigger, maybe a cpu one."""
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    behavior = (
        spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior") or {}
    )
    triggers = {t["type"]: t for t in spec["triggers"]}
    trigger = triggers["kafka"]
    cpu = triggers.get("cpu")
    return Scaling(
        name=name,
        lag_threshold=float(trigger["metadata"]["lagThreshold"]),
        activation_lag_threshold=float(trigger["metadata"].get("activationLagThreshold", 0)),
        min_replicas=int(spec.get("minReplicaCount", 0)),
        max_replicas=int(spec.get("maxReplicaCount", 100)),
        up=_rules(behavior.get("scaleUp"), DEFAULT_UP),
        down=_rules(behavior.get("scaleDown"), DEFAULT_DOWN),
        polling_s=int(spec.get("pollingInterval", 30)),
        cooldown_s=int(spec.get("cooldownPeriod", 300)),
        cpu_trigger=float(cpu["metadata"]["value"]) / 100 if cpu else None,
    )


def scaling_from_hpa(path: Path, name: str = "shipped (CPU HPA)") -> Scaling:
    """The settings of the CPU HorizontalPodAutoscaler manifest."""
    spec = yaml.safe_load(path.read_text())["spec"]
    (metric,) = spec["metrics"]
    behavior = spec.get("behavior") or {}
    return Scaling(
        name=name,
        lag_threshold=math.inf,
        activation_lag_threshold=0,
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec["maxReplicas"]),
        up=_rules(behavior.get("scaleUp"), DEFAULT_UP),
        down=_rules(behavior.get("scaleDown"), DEFAULT_DOWN),
        metric="cpu",
        cpu_target=metric["resource"]["target"]["averageUtilization"] / 100,
    )


def keda_metric(total_lag: float, threshold: float, partitions: int) -> float:
    """The lag KEDA's kafka scaler reports (allowIdleConsumers=false caps it)."""
    return min(total_lag, partitions * threshold)


def average_value_replicas(metric: float, target: float, current: int) -> int:
    """The HPA's raw recommendation for an External metric with an AverageValue target."""
    if current > 0 and abs(metric / (target * current) - 1) <= HPA_TOLERANCE:
        return current
    return math.ceil(metric / target)


def utilization_replicas(utilization: float, target: float, current: int) -> int:
    """The HPA's raw recommendation for a Resource (CPU) Utilization target."""
    ratio = utilization / target
    if abs(ratio - 1) <= HPA_TOLERANCE:
        return current
    return math.ceil(ratio * current)


@dataclass
class Hpa:
    """The HPA controller's memory: past recommendations and scale events."""

    scaling: Scaling
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, +added / -removed)

    def stabilize(self, now: float, desired: int, current: int) -> int:
        self.recommendations.append((now, desired))
        keep = max(self.scaling.up.window_s, self.scaling.down.window_s)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep - 1]
        up = min(
            (r for t, r in self.recommendations if t > now - self.scaling.up.window_s),
            default=desired,
        )
        down = max(
            (r for t, r in self.recommendations if t > now - self.scaling.down.window_s),
            default=desired,
        )
        up, down = min(up, desired), max(down, desired)
        return min(max(current, up), down)

    def _period_start(self, now: float, current: int, period_s: int) -> int:
        added = sum(d for t, d in self.events if t > now - period_s and d > 0)
        removed = -sum(d for t, d in self.events if t > now - period_s and d < 0)
        return current - added + removed

    def up_limit(self, now: float, current: int) -> int:
        rules = self.scaling.up
        if rules.select == "Disabled":
            return current
        limits = []
        for p in rules.policies:
            start = self._period_start(now, current, p.period_s)
            if p.kind == "Pods":
                limits.append(start + p.value)
            else:
                limits.append(math.ceil(start * (1 + p.value / 100)))
        limit = max(limits) if rules.select == "Max" else min(limits)
        return max(limit, current)

    def down_limit(self, now: float, current: int) -> int:
        rules = self.scaling.down
        if rules.select == "Disabled":
            return current
        limits = []
        for p in rules.policies:
            start = self._period_start(now, current, p.period_s)
            if p.kind == "Pods":
                limits.append(start - p.value)
            else:
                limits.append(int(start * (1 - p.value / 100)))
        limit = min(limits) if rules.select == "Max" else max(limits)
        return min(max(limit, 0), current)

    def decide(self, now: float, raw: int, current: int) -> int:
        """The replica count the HPA sets after one sync with recommendation ``raw``."""
        s = self.scaling
        desired = self.stabilize(now, raw, current)
        low = max(s.min_replicas, 1)
        if desired > current:
            desired = min(desired, self.up_limit(now, current), s.max_replicas)
        elif desired < current:
            desired = max(desired, self.down_limit(now, current), low)
        desired = min(max(desired, low), s.max_replicas)
        if desired != current:
            self.events.append((now, desired - current))
            keep = max([p.period_s for p in (*s.up.policies, *s.down.policies)], default=0)
            self.events = [(t, d) for t, d in self.events if t > now - keep - 1]
        return desired


def effective_pods(members: int, partitions: int) -> float:
    """Pods' worth of labelling a group of ``members`` gives an evenly spread backlog."""
    if members <= 0:
        return 0.0
    busy = min(members, partitions)
    return partitions / math.ceil(partitions / busy)


def paused_fraction(start: float, pause_until: float) -> float:
    """Share of the second [start, start + 1) inside a pause that ends at ``pause_until``."""
    return min(max(pause_until - start, 0.0), 1.0)


@dataclass
class Run:
    """One simulated trace: per-second series and the scaling actions."""

    arrivals: FloatArray
    served: FloatArray
    lag: FloatArray
    pods: FloatArray  # pods that exist (starting or labelling)
    members: FloatArray  # pods in the group
    actions: list[tuple[int, int, int]]  # (second, from, to)
    rebalances: int


def simulate(
    arrivals: Sequence[float] | FloatArray,
    scaling: Scaling,
    group: Group,
    *,
    start_replicas: int | None = None,
) -> Run:
    """Replay ``arrivals`` (tickets per second) through the autoscaler and the group."""
    arr = np.asarray(arrivals, dtype=np.float64)
    n = len(arr)
    s = scaling
    hpa = Hpa(s)
    replicas = s.min_replicas if start_replicas is None else start_replicas
    ready_at: list[float] = [-1.0] * replicas  # pods that exist, by the second they are ready
    joined = replicas
    pause_until = -1.0
    lag = 0.0
    last_active = 0.0
    busy_share = 0.0  # for the CPU metric: labelled / capacity since the last sync
    busy_capacity = 0.0
    out_served = np.zeros(n)
    out_lag = np.zeros(n)
    out_pods = np.zeros(n)
    out_members = np.zeros(n)
    actions: list[tuple[int, int, int]] = []
    rebalances = 0
    for t in range(n):
        # pods that finished their cold start join the group: one rebalance
        members = sum(1 for r in ready_at if r <= t)
        if members != joined:
            if members > joined:
                pause_until = max(pause_until, t) + group.join_pause_s
                rebalances += 1
            joined = members
        capacity = (
            effective_pods(members, group.partitions)
            * group.rate
            * (1 - paused_fraction(t, pause_until))
        )
        lag += arr[t]
        done = min(lag, capacity)
        lag -= done
        busy_share += done
        busy_capacity += effective_pods(members, group.partitions) * group.rate
        out_served[t], out_lag[t] = done, lag
        # the autoscaler looks at the end of the second
        if lag > s.activation_lag_threshold:
            last_active = t
        target = len(ready_at)
        if s.metric == "lag" and s.min_replicas == 0 and t % s.polling_s == 0:
            if target == 0 and lag > s.activation_lag_threshold:
                target = 1  # KEDA activates the workload
            elif target > 0 and t - last_active >= s.cooldown_s:
                target = 0  # KEDA deactivates it
        if target > 0 and t % HPA_SYNC_S == 0 and len(ready_at) > 0:
            util = busy_share / busy_capacity if busy_capacity > 0 else 0.0
            # a pod still starting counts as idle for the HPA's average
            util *= members / target if target else 0.0
            busy_share = busy_capacity = 0.0
            if s.metric == "lag":
                metric = keda_metric(lag, s.lag_threshold, group.partitions)
                raw = average_value_replicas(metric, s.lag_threshold, target)
                if s.cpu_trigger is not None:  # the HPA takes the larger recommendation
                    raw = max(raw, utilization_replicas(util, s.cpu_trigger, target))
            else:
                raw = utilization_replicas(util, s.cpu_target, target)
            target = hpa.decide(t, raw, target)
        if target != len(ready_at):
            actions.append((t, len(ready_at), target))
            if target > len(ready_at):
                ready_at += [t + group.cold_start_s] * (target - len(ready_at))
            else:
                # a Deployment removes pods that are not ready first, then the newest
                ready_at.sort()
                removed = ready_at[target:]
                ready_at = ready_at[:target]
                if any(r <= t for r in removed):
                    pause_until = max(pause_until, t + 1) + group.leave_pause_s
                    rebalances += 1
                joined = sum(1 for r in ready_at if r <= t)
        out_pods[t] = len(ready_at)
        out_members[t] = joined
    return Run(arr, out_served, out_lag, out_pods, out_members, actions, rebalances)


def waits(arrivals: FloatArray, served: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-second cohorts of a FIFO fluid queue: (wait of the cohort's middle ticket, size).

    A cohort still queued when the trace ends gets ``inf``.
    """
    cum_in = np.cumsum(arrivals)
    cum_out = np.concatenate([[0.0], np.cumsum(served)])
    middle = cum_in - arrivals / 2
    idx = np.searchsorted(cum_out, middle - 1e-9, side="left")
    result = np.full(len(arrivals), math.inf)
    ok = idx < len(cum_out)
    i = idx[ok]
    prev = cum_out[np.maximum(i - 1, 0)]
    step = cum_out[i] - prev
    frac = np.where(step > 0, (middle[ok] - prev) / np.where(step > 0, step, 1), 0.0)
    done_at = np.maximum(i - 1, 0) + np.clip(frac, 0, 1)
    result[ok] = np.maximum(done_at - (np.arange(len(arrivals))[ok] + 0.5), 0.0)
    return result, arrivals


def percentile_wait(wait: FloatArray, weight: FloatArray, q: float) -> float:
    """The ``q`` quantile (0..1) of the tickets' waits."""
    mask = weight > 0
    if not mask.any():
        return 0.0
    order = np.argsort(wait[mask])
    w, k = wait[mask][order], weight[mask][order]
    cum = np.cumsum(k) / k.sum()
    return float(w[min(int(np.searchsorted(cum, q)), len(w) - 1)])


def oscillations(actions: Sequence[tuple[int, int, int]]) -> int:
    """How often the count went up again after having gone down (down -> up reversals)."""
    count = 0
    went_down = False
    for _, before, after in actions:
        if after < before:
            went_down = True
        elif after > before and went_down:
            count += 1
            went_down = False
    return count


def drain_time(lag: FloatArray, burst_end: int, level: float) -> float:
    """Seconds after the burst's last second until the lag is back under ``level``."""
    after = np.nonzero(lag[burst_end:] <= level)[0]
    if len(after) == 0:
        return math.inf
    return float(after[0])


def summary(run: Run, *, burst: tuple[int, int] | None = None) -> dict[str, Any]:
    wait, weight = waits(run.arrivals, run.served)
    result: dict[str, Any] = {
        "tickets": round(float(run.arrivals.sum())),
        "p50_wait_s": round(percentile_wait(wait, weight, 0.50), 2),
        "p99_wait_s": round(percentile_wait(wait, weight, 0.99), 2),
        "max_wait_s": round(float(np.max(np.where(weight > 0, wait, 0))), 2),
        "max_lag": round(float(run.lag.max())),
        "peak_pods": int(run.pods.max()),
        "scale_actions": len(run.actions),
        "rebalances": run.rebalances,
        "oscillations": oscillations(run.actions),
        "pod_minutes": round(float(run.pods.sum()) / 60, 1),
        "left_in_lag": round(float(run.lag[-1])),
    }
    if burst is not None:
        start, end = burst
        # back under two seconds of the arrivals that follow the burst (at least 10 tickets)
        level = max(2 * float(np.mean(run.arrivals[end:])) if end < len(run.lag) else 0, 10)
        result["drain_after_burst_s"] = drain_time(run.lag, end, level)
        result["burst_p99_wait_s"] = round(
            percentile_wait(wait[start:end], weight[start:end], 0.99), 2
        )
    return result


def with_max(scaling: Scaling, max_replicas: int) -> Scaling:
    return replace(scaling, max_replicas=max_replicas)


def sigkill_stall(  # noqa: PLR0913 (the measured inputs, all keywords)
    *,
    rate: float,
    partitions: int,
    members: int,
    load: float,
    detect_s: float,
    restart_s: float,
    leave_pause_s: float,
    join_pause_s: float,
    static: bool,
    horizon_s: int = 600,
    kill_at: int = 60,
) -> dict[str, float]:
    """One of ``members`` pods SIGKILLed at ``kill_at`` under ``load`` x the group's capacity.

    Dynamic membership: the dead member keeps its partitions until the broker's session
    timeout (``detect_s``) expires; a rebalance (``leave_pause_s``) then hands them to the
    survivors. Its replacement (a new member) comes after ``restart_s``: if that is before the
    timeout, the rebalance its join starts waits for the dead member too, so the *whole group*
    stops from the join until the timeout; otherwise it joins with a rebalance of its own.
    Static membership (``group.instance.id`` = the pod's stable name): the partitions stay
    the dead member's until it comes back under the same name after ``restart_s``, with no
    rebalance, as long as that is within the session timeout; otherwise as dynamic.
    Two fluid queues: the dead member's partitions and the others'.
    """
    share_parts = math.ceil(partitions / members)
    share = share_parts / partitions
    total = effective_pods(members, partitions) * rate * load
    arrivals_v = np.full(horizon_s, total * share)
    arrivals_o = np.full(horizon_s, total * (1 - share))
    served_v, served_o = np.zeros(horizon_s), np.zeros(horizon_s)
    lag_v = lag_o = 0.0
    takeover = kill_at + detect_s
    comeback = kill_at + restart_s
    full = effective_pods(members, partitions) * rate
    normal = (rate, full - rate)  # the victim (or its successor) and the others
    one_short = (0.0, full - rate)  # nobody reads the dead member's partitions
    survivors = effective_pods(members - 1, partitions) * rate
    # (from, until, (capacity of the dead member's partitions, of the others')), in order
    phases: list[tuple[float, float, tuple[float, float]]]
    if static and comeback < takeover:
        phases = [(kill_at, comeback, one_short)]
        stalled_until, paused = comeback, 0.0
    elif comeback < takeover:
        stalled_until = takeover + leave_pause_s
        phases = [(kill_at, comeback, one_short), (comeback, stalled_until, (0.0, 0.0))]
        paused = stalled_until - comeback
    else:
        stalled_until = takeover + leave_pause_s
        phases = [
            (kill_at, takeover, one_short),
            (takeover, stalled_until, (0.0, 0.0)),
            (stalled_until, comeback, (survivors * share, survivors * (1 - share))),
            (comeback, comeback + join_pause_s, (0.0, 0.0)),
        ]
        paused = leave_pause_s + join_pause_s
    for t in range(horizon_s):
        # the capacity of second [t, t + 1), phases weighted by their overlap with it
        cap_v = cap_o = 0.0
        covered = 0.0
        for start, end, (pv, po) in phases:
            overlap = max(min(t + 1, end) - max(t, start), 0.0)
            cap_v, cap_o, covered = cap_v + pv * overlap, cap_o + po * overlap, covered + overlap
        cap_v += normal[0] * (1 - covered)
        cap_o += normal[1] * (1 - covered)
        lag_v += arrivals_v[t]
        lag_o += arrivals_o[t]
        dv, do = min(lag_v, cap_v), min(lag_o, cap_o)
        # work-conserving: spare capacity of one side goes to the other (not while stalled)
        spare_v, spare_o = cap_v - dv, cap_o - do
        if cap_v > 0:
            dv += min(lag_v - dv, spare_o)
        do += min(lag_o - do, spare_v)
        lag_v, lag_o = lag_v - dv, lag_o - do
        served_v[t], served_o[t] = dv, do
    wait_v, weight_v = waits(arrivals_v, served_v)
    wait_o, weight_o = waits(arrivals_o, served_o)
    window = slice(kill_at - 30, horizon_s)
    all_wait = np.concatenate([wait_v[window], wait_o[window]])
    all_weight = np.concatenate([weight_v[window], weight_o[window]])
    return {
        "dead_partitions_stall_s": round(stalled_until - kill_at, 2),
        "whole_group_paused_s": round(paused, 2),
        "dead_partitions_max_wait_s": round(float(wait_v[window].max()), 2),
        "dead_partitions_p99_wait_s": round(
            percentile_wait(wait_v[window], weight_v[window], 0.99), 2
        ),
        "all_p99_wait_s": round(percentile_wait(all_wait, all_weight, 0.99), 2),
    }
