"""A study as the text `latchkey simulate` prints: a header, side-by-side tables, the bill, the storm."""

from __future__ import annotations

import math
from collections.abc import Iterator

from fleetsim import cost, replay
from fleetsim import study as st
from fleetsim.units import DAY, describe_duration

_LABEL = 44
_WIDTH = 20


def header(spec: st.StudySpec, prices: dict[str, object]) -> Iterator[str]:
    """What is simulated, printed before the (long) computation starts."""
    fleet = spec.fleet
    spread = fleet.power_on_hours * 3600
    yield f"Fleet simulation: {fleet.devices:,} devices over {fleet.days:g} days"
    yield (
        f"  power-on uniform over the first {describe_duration(spread) if spread else '0 s (all at once)'}; "
        f"claim delay {fleet.claim.describe()}"
    )
    yield (
        f"  per schedule: {spec.samples:,} sampled claimed devices + never-claimed timelines x "
        f"{spec.sampling.replicas} power-on times, scaled to the fleet; 'agent' runs firmware.schedule, "
        "the agent's own code"
    )
    yield f"  prices: {prices['source']}, {prices['date']} (to be re-checked)"
    yield ""


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if value != value or math.isinf(value) else f"{value:,.{digits}f}"


def _row(label: str, values: list[str]) -> str:
    return f"  {label:<{_LABEL}}" + "".join(f"{v:>{_WIDTH}}" for v in values)


def tables(study: st.Study) -> Iterator[str]:
    results, billed = study.results, study.bills
    days = study.spec.fleet.days
    g = st.GOALS
    yield f"  {'':<{_LABEL}}" + "".join(f"{r.schedule.label:>{_WIDTH}}" for r in results)
    yield "Polls of a device nobody claims"
    yield _row("in its first hour", [_num(r.first_hour) for r in results])
    yield _row(f"in its first day (goal <= {g['polls_day1']:g})", [_num(r.first_day) for r in results])
    yield _row(
        f"per month after its first day (goal <= {g['polls_month_after']:g})",
        [_num(r.per_month_after) for r in results],
    )
    yield "Claim to online (claim -> the next poll), s"
    yield _row(
        f"p50, claims within 10 min (goal <= {g['p50_within_10min_s']:g})",
        [_num(r.percentile_within(st.CLAIM_WINDOW_S), 1) for r in results],
    )
    yield _row(f"p50, all claims (goal <= {g['p50_all_s']:g})", [_num(r.percentile(50), 1) for r in results])
    for pct in (90, 99):
        yield _row(f"p{pct}, all claims", [_num(r.percentile(pct), 1) for r in results])
    replug = study.spec.fleet.replug
    yield _row(
        f"owners who replug ({replug.share:.0%} of those waiting > {replug.patience:g} s)",
        [f"{r.replug_share:.1%}" for r in results],
    )
    yield _row(
        "p50, all claims, with those replugs",
        [_num(replay.percentile(r.replugged_delays, 50), 1) for r in results],
    )
    yield f"Fleet load over the {days:g} days"
    yield _row("device API requests, millions", [_num(r.requests / 1e6, 1) for r in results])
    yield _row("average req/s", [_num(r.mean_rps) for r in results])
    yield _row("busiest hour, req/s", [_num(r.peak_hour_rps) for r in results])
    yield _row("last day, req/s", [_num(r.last_day_requests / DAY) for r in results])
    yield "Power outage: the whole fleet, none claimed, reboots at t=0, req/s (no first-poll delay)"
    later = [study.outages[r.schedule.kind]["jitter"] for r in results]
    yield _row("first second", [_num(o.first_second) for o in later])
    yield _row(
        "busiest later second", [f"{_num(o.peak_after_first)} (t={o.peak_after_first_at}s)" for o in later]
    )
    yield "Monthly bill of the device API alone, $ (list prices)"
    yield _row(f"total, first {days:g} days scaled to 30", [_num(b["first"]["total"]) for b in billed])
    yield _row("total, a later month (last day's rate)", [_num(b["later"]["total"]) for b in billed])
    yield ""


def bill(study: st.Study) -> Iterator[str]:
    """The whole monthly bill, per component: presence at the floor next to today's."""
    bills = study.fleet_bills
    if not bills:
        return
    p = study.prices
    floor = cost.connectivity_floor(p)
    idle = {d: cost.price(cost.presence_usage(d, p), p)["total"] for d in ("floor", "today")}
    mix = next(iter(bills.values())).shares
    devices = next(iter(bills.values())).devices
    yield (
        f"The whole monthly bill of {devices:,} devices, $ (mix: {mix['unclaimed']:.0%} unclaimed, "
        f"{mix['online_idle']:.0%} online idle, {mix['toggling']:.0%} toggled "
        f"{p['fleet_mix']['toggles_per_day']:g} times a day)"
    )
    designs = [d for d in ("floor", "today") if d in bills]
    names = {"floor": "agent, presence at floor", "today": "today (60 s cap, 30 s)"}
    yield f"  {'':<{_LABEL}}" + "".join(f"{names[d]:>{_WIDTH + 6}}" for d in designs)
    for component in cost.COMPONENTS:
        yield f"  {cost.LABELS[component]:<{_LABEL}}" + "".join(
            f"{bills[d].cost[component]:>{_WIDTH + 6},.0f}" for d in designs
        )
    yield f"  {'total':<{_LABEL}}" + "".join(f"{bills[d].cost['total']:>{_WIDTH + 6},.0f}" for d in designs)
    yield (
        f"One online idle device a month: ${idle['floor']:.5f} at the floor design "
        f"({idle['floor'] / floor:.2f} x the connectivity floor ${floor:.5f}; goal <= 1.5 x), "
        f"${idle['today']:.4f} today ({idle['today'] / floor:.0f} x)"
    )
    yield ""


def sweep(study: st.Study) -> Iterator[str]:
    if study.sweep is None:
        return
    yield "Growth sweep of the agent's schedule (wait = growth x age after the 10-minute fast window)"
    yield f"  {'growth':>7} {'day 1':>7} {'month':>7} {'p50 10m':>8} {'p50 all':>8}"
    for row in study.sweep:
        f = row.goals()
        yield (
            f"  {row.growth:7.2f} {f['polls_day1']:7.1f} {f['polls_month_after']:7.0f} "
            f"{f['p50_within_10min_s']:8.1f} {f['p50_all_s']:8.1f}"
            + ("   meets every goal" if row.meets else "")
        )
    yield ""


def storm(study: st.Study) -> Iterator[str]:
    s = study.storm
    if s is None:
        return
    spec = s.spec
    yield (
        f"Reconnect storm: {spec.devices:,} devices ({spec.unclaimed:.0%} unclaimed) power back on at t=0 "
        "(agent's first-poll delay, spread 429 retries, jittered MQTT reconnects)"
    )
    yield (
        f"  device API: peak {s.peak_api_rps:,.0f} req/s offered against the poll route's throttle "
        f"{spec.api_rate:,.0f} req/s (burst {spec.api_burst:,.0f}); the excess gets 429 and retries spread"
    )
    yield (
        f"  IoT Core: peak {s.peak_connects_per_s:,.0f} CONNECT/s offered against the account quota "
        f"{spec.connect_quota:,.0f}/s; concurrent connections quota assumed >= {spec.concurrent_quota:,.0f}"
    )
    yield (
        f"  claimed devices online: 50 % after {_num(s.seconds_to_online(0.5) / 60, 1)} min, "
        f"99 % after {_num(s.seconds_to_online(0.99) / 60, 1)} min; checks with the device API after "
        f"failed connects: {s.checks / max(1.0, spec.devices * (1 - spec.unclaimed)):.2f} per claimed device"
    )
    yield ""


def throttle(study: st.Study) -> Iterator[str]:
    """The agent's schedule against the device routes' throttle, when the service is known."""
    limit = study.spec.service.poll_throttle or study.spec.service.throttle
    agent = study.result("agent")
    if limit is None or agent is None:
        return
    rate, burst = limit
    yield (
        f"Poll route throttle (lambdas/definitions.py): {rate:g} req/s, burst {burst}. The fleet on the "
        f"agent's schedule needs {agent.mean_rps:,.0f} req/s on average and {agent.peak_hour_rps:,.0f} in its "
        "busiest hour: "
        + ("within it." if agent.peak_hour_rps <= rate else "above it; the excess is answered 429.")
    )
    yield ""


def lines(study: st.Study) -> Iterator[str]:
    """Everything after the header, in the order the command prints it."""
    yield from tables(study)
    yield from bill(study)
    yield from sweep(study)
    yield from storm(study)
    yield from throttle(study)
