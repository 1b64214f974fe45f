"""Autoscaling simulation: the shipped KEDA settings and alternatives on lag traces.

    python -m bench.autoscale [--rate 80] [--cold-start 10] [--out bench/results/autoscale.json]

No cluster: lag traces (a Monday-morning ramp, an outage burst, a steady day) at four sizes
(10k to 10M tickets/day) are replayed through KEDA's kafka scaler and the HPA's behaviour as
``bench/autoscale_model.py`` models them, with the per-pod rate, the cold start and the
measured rebalance pauses as inputs. The shipped settings are read from
``k8s/components/keda/scaledobject.yaml`` and ``k8s/components/hpa/hpa.yaml``. Writes
``bench/results/autoscale.json`` and plots into ``docs/images/`` (docs/deploying.md).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.autoscale_model import (
    DEFAULT_DOWN,
    FloatArray,
    Group,
    Policy,
    Rules,
    Run,
    Scaling,
    scaling_from_hpa,
    scaling_from_keda,
    sigkill_stall,
    simulate,
    summary,
)

REPO = Path(__file__).resolve().parents[1]
KEDA = REPO / "k8s" / "components" / "keda" / "scaledobject.yaml"
HPA = REPO / "k8s" / "components" / "hpa" / "hpa.yaml"
DAY = 86_400

# (name, tickets/day, partitions): max replicas = partitions at each size
SIZES = [
    ("help desk", 10_000, 12),
    ("mid-size", 100_000, 12),
    ("enterprise", 1_000_000, 24),
    ("large SaaS", 10_000_000, 48),
]


def day_shape(hours: FloatArray) -> FloatArray:
    """Arrivals over a working day relative to the day's mean (mean 1 over 24 h)."""
    raw = (
        0.2
        + 1.6 * np.exp(-(((hours - 10.5) / 2.2) ** 2))
        + 1.3 * np.exp(-(((hours - 15.0) / 2.2) ** 2))
    )
    full = np.arange(0, 24, 1 / 60)
    norm = 0.2 + 1.6 * np.exp(-(((full - 10.5) / 2.2) ** 2))
    norm = norm + 1.3 * np.exp(-(((full - 15.0) / 2.2) ** 2))
    result: FloatArray = raw / norm.mean()
    return result


def poisson(rate: FloatArray, seed: int) -> FloatArray:
    result: FloatArray = np.random.default_rng(seed).poisson(rate).astype(np.float64)
    return result


def trace_day(per_day: float, seed: int) -> FloatArray:
    hours = np.arange(DAY) / 3600
    return poisson(per_day / DAY * day_shape(hours), seed)


def trace_monday(per_day: float, seed: int) -> FloatArray:
    """07:00-13:00: 0.3 x the mean at 07:00, 3 x from 09:00 to 11:00, 2 x at 13:00."""
    hours = 7 + np.arange(6 * 3600) / 3600
    level = np.interp(hours, [7, 9, 11, 13], [0.3, 3.0, 3.0, 2.0])
    return poisson(per_day / DAY * level, seed)


def trace_burst(per_day: float, extra: float, seed: int) -> tuple[FloatArray, tuple[int, int]]:
    """Peak-hour baseline for 2 h; ``extra`` tickets spread over 10 minutes after 30 minutes."""
    base = per_day / DAY * float(day_shape(np.array([10.5]))[0])
    rate = np.full(2 * 3600, base)
    start, end = 1800, 1800 + 600
    rate[start:end] += extra / 600
    return poisson(rate, seed), (start, end)


def previous(partitions: int) -> Scaling:
    """The settings before this derivation (lagThreshold 600 from ~25-30 tickets/s)."""
    return Scaling(
        name="previous: lagThreshold 600, +4 pods/60 s, -1 pod/120 s",
        lag_threshold=600,
        activation_lag_threshold=20,
        min_replicas=1,
        max_replicas=partitions,
        up=Rules(0, (Policy("Pods", 4, 60),)),
        down=Rules(300, (Policy("Pods", 1, 120),)),
    )


def configs(partitions: int) -> list[Scaling]:
    """The shipped settings (max = the size's partitions) and the alternatives."""
    shipped = replace(scaling_from_keda(KEDA), max_replicas=partitions)
    hpa = scaling_from_hpa(HPA)
    return [
        shipped,
        previous(partitions),
        replace(shipped, name="shipped without the cpu trigger", cpu_trigger=None),
        replace(
            shipped,
            name="shipped with Kubernetes' default scale-down (300 s, 100%/15 s)",
            down=DEFAULT_DOWN,
        ),
        replace(shipped, name="lagThreshold / 4", lag_threshold=shipped.lag_threshold / 4),
        replace(shipped, name="scale to zero (minReplicaCount 0)", min_replicas=0),
        replace(hpa, name="CPU HPA (k8s/components/hpa)", max_replicas=partitions),
    ]


def run_one(arrivals: FloatArray, scaling: Scaling, group: Group, **kw: Any) -> Run:
    return simulate(arrivals, scaling, group, **kw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=80.0, help="tickets/s of one pod")
    parser.add_argument("--cold-start", type=float, default=10.0, help="pod start to labelling, s")
    parser.add_argument("--join-pause", type=float, default=0.7)
    parser.add_argument("--leave-pause", type=float, default=2.3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "autoscale.json")
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--no-day", action="store_true", help="skip the 24 h traces (faster)")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "inputs": {
            "rate_per_pod": args.rate,
            "cold_start_s": args.cold_start,
            "join_pause_s": args.join_pause,
            "leave_pause_s": args.leave_pause,
            "shipped": str(KEDA.relative_to(REPO)),
        },
        "runs": [],
    }
    plotted: dict[str, dict[str, Run]] = {}
    for size, per_day, partitions in SIZES:
        group = Group(
            rate=args.rate,
            partitions=partitions,
            cold_start_s=args.cold_start,
            join_pause_s=args.join_pause,
            leave_pause_s=args.leave_pause,
        )
        traces: list[tuple[str, FloatArray, tuple[int, int] | None]] = []
        burst, window = trace_burst(per_day, 20_000, seed=1)
        traces.append(("outage burst: 20,000 tickets in 10 min", burst, window))
        big, window_big = trace_burst(per_day, 10 * per_day / DAY * 600, seed=2)
        traces.append(("outage burst: 10 x the mean rate for 10 min", big, window_big))
        traces.append(("Monday morning ramp (07:00-13:00)", trace_monday(per_day, seed=3), None))
        if not args.no_day:
            traces.append(("steady day (24 h)", trace_day(per_day, seed=4), None))
        for trace, arrivals, burst_window in traces:
            for scaling in configs(partitions):
                run = run_one(arrivals, scaling, group)
                row = {
                    "size": size,
                    "tickets_per_day": per_day,
                    "partitions": partitions,
                    "trace": trace,
                    "settings": scaling.name,
                    "lag_threshold": scaling.lag_threshold if scaling.metric == "lag" else None,
                    **summary(run, burst=burst_window),
                }
                results["runs"].append(row)
                key = f"{size} | {trace}"
                plotted.setdefault(key, {})[scaling.name] = run
                print(
                    f"{size:11} {trace[:34]:34} {scaling.name[:44]:44} "
                    f"drain {row.get('drain_after_burst_s', '-')!s:>6} "
                    f"p99 {row['p99_wait_s']:>7} s "
                    f"peak {row['peak_pods']:>2} actions {row['scale_actions']:>3} "
                    f"osc {row['oscillations']} pod-min {row['pod_minutes']}"
                )
    results["sigkill"] = sigkill_table(args.rate)
    for row in results["sigkill"]:
        print(f"SIGKILL {row}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=_json) + "\n")
    print(f"wrote {args.out}")
    plot(plotted, args.plots)


def _json(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return None
    raise TypeError(type(value))


def sigkill_table(rate: float) -> list[dict[str, Any]]:
    """One of 4 pods on 12 partitions SIGKILLed at 70% load, three membership settings."""
    rows = []
    cases = [
        ("dynamic, BROKER_SESSION_TIMEOUT=30 (before)", 30.0, False),
        ("dynamic, BROKER_SESSION_TIMEOUT=10", 10.0, False),
        ("static (CONSUMER_GROUP_INSTANCE_ID = pod name), timeout 30", 30.0, True),
    ]
    for name, timeout, static in cases:
        rows.append(
            {
                "membership": name,
                **sigkill_stall(
                    rate=rate,
                    partitions=12,
                    members=4,
                    load=0.7,
                    detect_s=timeout,
                    restart_s=15.0,  # kubelet restarts the container: ~5 s + 10 s cold start
                    leave_pause_s=2.3,
                    join_pause_s=0.7,
                    static=static,
                ),
            }
        )
    return rows


def plot(runs: dict[str, dict[str, Run]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "autoscale-burst.png": [
            "help desk | outage burst: 20,000 tickets in 10 min",
            "large SaaS | outage burst: 10 x the mean rate for 10 min",
        ],
        "autoscale-monday.png": [
            "enterprise | Monday morning ramp (07:00-13:00)",
            "large SaaS | Monday morning ramp (07:00-13:00)",
        ],
    }
    for filename, keys in figures.items():
        fig, axes = plt.subplots(2, len(keys), figsize=(12, 6), sharex="col")
        for col, key in enumerate(keys):
            for name, run in runs[key].items():
                if name.startswith(("scale to zero", "lagThreshold / 4", "shipped with")):
                    continue
                minutes = np.arange(len(run.lag)) / 60
                axes[0][col].plot(minutes, run.lag, label=name, linewidth=1)
                axes[1][col].step(minutes, run.pods, label=name, linewidth=1, where="post")
            axes[0][col].set_title(key, fontsize=9)
            axes[0][col].set_ylabel("lag (tickets)")
            axes[1][col].set_ylabel("pods")
            axes[1][col].set_xlabel("minutes")
        axes[1][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / filename, dpi=72)
        plt.close(fig)
        print(f"wrote {folder / filename}")


if __name__ == "__main__":
    main()
