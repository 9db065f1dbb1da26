"""A study as the text `latchkey simulate` prints: a header, side-by-side tables, the cap sweep."""

from __future__ import annotations

import math
from collections.abc import Iterator

from firmware import schedule
from fleetsim import study as st
from fleetsim.units import DAY, describe_duration

_LABEL = 40
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
        f"{spec.sampling.replicas} power-on times, scaled to the fleet; 'backoff' runs firmware.schedule, "
        "the agent's own code"
    )
    yield f"  prices: {prices['source']}, {prices['date']} (to be re-checked)"
    yield ""


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def _row(label: str, values: list[str]) -> str:
    return f"  {label:<{_LABEL}}" + "".join(f"{v:>{_WIDTH}}" for v in values)


def tables(study: st.Study) -> Iterator[str]:
    results, outages, billed = study.results, study.outages, study.bills
    days = study.spec.fleet.days
    jitter = study.spec.jitter
    yield f"  {'':<{_LABEL}}" + "".join(f"{r.schedule.label:>{_WIDTH}}" for r in results)
    yield "Polls of a device nobody claims"
    yield _row("in its first hour", [_num(r.first_hour) for r in results])
    yield _row("in its first day", [_num(r.first_day) for r in results])
    yield _row("per month after its first day", [_num(r.per_month_after) for r in results])
    yield "Claim to online (claim -> the next poll), s"
    for pct in (50, 90, 99):
        yield _row(f"p{pct}", [_num(r.percentile(pct), 1) for r in results])
    yield f"Fleet load over the {days:g} days"
    yield _row("device API requests, millions", [_num(r.requests / 1e6, 1) for r in results])
    yield _row("average req/s", [_num(r.mean_rps) for r in results])
    yield _row("busiest hour, req/s", [_num(r.peak_hour_rps) for r in results])
    yield _row("last day, req/s", [_num(r.last_day_requests / DAY) for r in results])
    yield _row("still unclaimed at the end", [f"{r.unclaimed_at_end:.1%}" for r in results])
    yield "DynamoDB, on-demand (1 read per poll, lastPollAt write <= 1 per 5 min)"
    yield _row("reads/s, average (RCU = reads/s x 0.5)", [_num(r.mean_rps) for r in results])
    yield _row("reads/s, busiest hour", [_num(r.peak_hour_rps) for r in results])
    yield _row(
        "read request units / 30 days, millions", [_num(b["first"]["read_units"] / 1e6, 1) for b in billed]
    )
    yield _row(
        "write request units / 30 days, millions", [_num(b["first"]["write_units"] / 1e6, 1) for b in billed]
    )
    yield "Power outage: the whole fleet, none claimed, reboots at t=0, req/s"
    for name, text in (("jitter", f"jitter ±{jitter:.0%}"), ("none", "no jitter")):
        later = [outages[r.schedule.kind][name] for r in results]
        yield _row(f"first second, {text}", [_num(o.first_second) for o in later])
        yield _row(
            f"busiest later second, {text}",
            [f"{_num(o.peak_after_first)} (t={o.peak_after_first_at}s)" for o in later],
        )
    yield _row(
        f"first second, the fleet at day {days:g}",
        [
            f"{_num(outages[r.schedule.kind]['jitter'].first_second * r.unclaimed_at_end)} ({r.unclaimed_at_end:.0%})"
            for r in results
        ],
    )
    yield "  (claimed devices with saved credentials reconnect to IoT Core without polling)"
    yield "Monthly bill of the device API, $ (list prices)"
    yield _row("API Gateway (HTTP API)", [_num(b["first"]["api_gateway"]) for b in billed])
    yield _row("Lambda (arm64, requests + GB-s)", [_num(b["first"]["lambda"]) for b in billed])
    yield _row("DynamoDB (reads + writes)", [_num(b["first"]["dynamodb"]) for b in billed])
    yield _row(f"total, first {days:g} days scaled to 30", [_num(b["first"]["total"]) for b in billed])
    yield _row("total, a later month (last day's rate)", [_num(b["later"]["total"]) for b in billed])
    yield _row(
        "+ CloudWatch Logs and X-Ray, first month", [_num(b["first"]["observability"]) for b in billed]
    )
    yield ""


def sweep(study: st.Study) -> Iterator[str]:
    if study.sweep is None:
        return
    window = f"{st.CLAIM_WINDOW_S / 60:g} min"
    claim = study.spec.fleet.claim
    yield (
        f"Backoff cap sweep: median claim-to-online (claim -> the next poll) of devices claimed within {window} "
        f"of power-on, target < {st.DELAY_TARGET_S:g} s,"
    )
    yield (
        f"  U: claims uniform over the {window}; F: the fleet's claim delays ({claim.kind}) cut at {window}"
        + ("" if study.sweep.own_claims else " (too rare: skipped)")
    )
    yield (
        f"  {'cap s':>7} {'U p50':>7} {'U p90':>7} {'U p99':>7} {'F p50':>7} {'polls/month':>12} "
        f"{'$ first 30 d':>13} {'$ later month':>14}   (polls/month: a device nobody claims)"
    )
    for row in study.sweep.rows:
        u, f = row.uniform, row.own
        yield (
            f"  {u.cap:7.0f} {u.p50:7.1f} {u.p90:7.1f} {u.p99:7.1f} {f.p50 if f else math.nan:7.1f} "
            f"{row.result.per_month_after:12,.0f} {row.bill['first']['total']:13,.0f} "
            f"{row.bill['later']['total']:14,.0f}" + ("   meets the target" if row.meets else "")
        )
    chosen = study.sweep.chosen
    yield (
        f"Cheapest cap with a median claim-to-online under {st.DELAY_TARGET_S:g} s: "
        + (f"{chosen:g} s" if chosen else "none in the sweep")
        + f" (the agent's default: {schedule.DEFAULT_CAP:g} s)"
    )
    yield ""


def throttle(study: st.Study) -> Iterator[str]:
    """The agent's schedule against the device routes' stage throttle, when the service is known."""
    limit = study.spec.service.throttle
    if limit is None:
        return
    rate, burst = limit
    days = study.spec.fleet.days
    for r in study.results:
        if r.schedule.kind == "backoff":
            yield (
                f"Device routes' stage throttle (lambdas/definitions.py): {rate:g} req/s, burst {burst}. "
                f"This fleet on the agent's schedule needs {r.mean_rps:,.0f} req/s on average over "
                f"its first {days:g} days, {r.peak_hour_rps:,.0f} in its busiest hour and "
                f"{r.last_day_requests / DAY:,.0f} on its last day: "
                + ("within it." if r.peak_hour_rps <= rate else "above it; the excess is answered 429.")
            )
    yield ""


def lines(study: st.Study) -> Iterator[str]:
    """Everything after the header, in the order the command prints it."""
    yield from tables(study)
    yield from sweep(study)
    yield from throttle(study)
