"""The PNG of a study: the monthly bill stacked per component, the fleet's request rate after a power
outage, and over the whole horizon.

Series are means per bucket (10 s after the outage, a few hours over the horizon), drawn as steps:
per-second or per-hour counts of a sampled, jittered fleet alternate between full and empty bins,
which on a log axis reads as a comb rather than as a load. A bucket without any request leaves a gap
(a log axis has no zero) instead of a spike down to an arbitrary floor. One legend for both panels,
above them, so it never covers data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleetsim.study import Study
from fleetsim.units import DAY, HOUR

OUTAGE_BUCKET_S = 10
MAX_HORIZON_BUCKETS = 240


def buckets(values: Sequence[float], width: int) -> list[float]:
    """Means of consecutive groups of `width` values (the last group may be shorter); 0 becomes nan."""
    out = []
    for start in range(0, len(values), width):
        group = values[start : start + width]
        mean = sum(group) / len(group)
        out.append(mean if mean > 0 else math.nan)
    return out


def horizon_bucket_hours(hours: int) -> int:
    """Whole hours per bucket so that the horizon has at most MAX_HORIZON_BUCKETS buckets."""
    return max(1, math.ceil(hours / MAX_HORIZON_BUCKETS))


def figure(study: Study) -> Any:
    """The matplotlib Figure (Agg backend); `save()` writes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = study.results
    devices = study.spec.fleet.devices
    fig, (costs, top, bottom) = plt.subplots(
        3, 1, figsize=(10, 12), layout="constrained", gridspec_kw={"height_ratios": [1, 1.2, 1.2]}
    )
    draw_bill(costs, study)

    first_second = 0.0
    for i, r in enumerate(results):
        jittered = study.outages[r.schedule.kind]["jitter"]
        first_second = max(first_second, jittered.first_second)
        series = buckets(jittered.per_second, OUTAGE_BUCKET_S)
        edges: list[float] = [float(k * OUTAGE_BUCKET_S) for k in range(len(series) + 1)]
        top.stairs(series, edges, label=r.schedule.label, color=f"C{i}", linewidth=1.4, baseline=None)
    top.plot([0.5], [first_second], marker="v", color="black", linestyle="none")
    top.annotate(
        f"first second: {first_second:,.0f} req/s (every device polls at power-on)",
        (0.5, first_second),
        xytext=(12, -4),
        textcoords="offset points",
        va="top",
        fontsize=9,
    )
    top.set_yscale("log")
    top.set_ylim(top=first_second * 4)  # room for the first-second marker and its note
    top.set_xlim(0, len(jittered.per_second))
    top.set_xlabel("seconds after the power comes back")
    top.set_ylabel(f"requests per second ({OUTAGE_BUCKET_S} s mean)")
    top.set_title(
        f"After a regional power outage: {devices:,} unclaimed devices reboot at once (jittered waits)"
    )

    hours = len(results[0].hourly)
    width = horizon_bucket_hours(hours)
    for i, r in enumerate(results):
        series = [v / HOUR for v in buckets(r.hourly, width)]
        edges = [min(k * width, hours) * HOUR / DAY for k in range(len(series) + 1)]
        bottom.stairs(series, edges, color=f"C{i}", linewidth=1.4, baseline=None)
    bottom.set_yscale("log")
    bottom.set_xlim(0, hours * HOUR / DAY)
    bottom.set_xlabel("days after the first power-on")
    bottom.set_ylabel(f"requests per second ({width} h mean)")
    bottom.set_title(f"The fleet over {study.spec.fleet.days:g} days: power-on and claims spread out")
    handles, labels = top.get_legend_handles_labels()  # the schedules only; the bill has its own legend
    fig.legend(handles, labels, loc="outside upper center", ncols=len(results), frameon=False)
    return fig


def draw_bill(ax: Any, study: Study) -> None:
    """Horizontal bars, one per presence design, stacked by component (fleetsim.cost.COMPONENTS)."""
    from fleetsim import cost

    designs = [d for d in ("floor", "today") if d in study.fleet_bills]
    # Short labels: long ones would push this panel's axis right and crop the titles below.
    names = {"floor": "agent,\nat the floor", "today": "today"}
    left = [0.0] * len(designs)
    for k, component in enumerate(cost.COMPONENTS):
        widths = [study.fleet_bills[d].cost[component] for d in designs]
        ax.barh(range(len(designs)), widths, left=left, color=f"C{k}", label=cost.LABELS[component])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for i, total in enumerate(left):
        ax.annotate(f"${total:,.0f}", (total, i), xytext=(4, 0), textcoords="offset points", va="center")
    ax.set_yticks(range(len(designs)), [names[d] for d in designs])
    ax.set_xlim(0, max(left, default=1.0) * 1.15)
    ax.set_xlabel("$ per month (list prices)")
    ax.set_title(f"The whole monthly bill of {study.spec.fleet.devices:,} devices, per component")
    ax.legend(loc="lower right", fontsize=8, ncols=2)


def save(study: Study, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
