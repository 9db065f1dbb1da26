"""The fleet simulator (fleetsim/, `latchkey simulate`) replays the agent's own schedule, counts polls
and peaks right, and prices them like a hand computation."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from click.testing import CliRunner

from cli.simulate import simulate as simulate_command
from firmware import schedule
from firmware.agent import Agent
from firmware.api import Response
from firmware.clock import VirtualClock
from firmware.config import AgentConfig
from fleetsim import fleet as fm
from fleetsim import prices as pm
from fleetsim import replay, units
from tests.unit.firmware.firmware_fakes import SYSTEM_INFO, FakeTransport, write_identity

NEVER_CLAIMED = fm.ClaimModel(never=1.0)


def test_the_simulator_calls_the_agents_next_delay(monkeypatch):
    # Given a recording wrapper around the agent's schedule function
    seen = []
    real = schedule.next_delay

    def recording(attempt, rng, *args, **kwargs):
        seen.append(attempt)
        return real(attempt, rng, *args, **kwargs)

    monkeypatch.setattr(schedule, "next_delay", recording)
    # When a small fleet is simulated on the agent's schedule
    fm.simulate(
        fm.Fleet(devices=100, days=1),
        replay.Schedule("agent"),
        fm.Sampling(claimed=20, never_min=1, never_max=1),
    )
    # Then every wait came from it, attempt by attempt since power-on
    assert seen[:5] == [1, 2, 3, 4, 5]
    assert len(seen) > 1000


class _UnclaimedApi:
    """The device API as the agent's Http: always `unclaimed`; records the virtual time of each poll."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.polls: list[float] = []

    def post(self, url, body, headers, timeout):
        assert url.endswith("/v1/device/poll")
        self.polls.append(self.clock.monotonic())
        return Response(200, {"status": "unclaimed", "retryAfter": 0})


def test_simulated_poll_times_are_the_real_agents(tmp_path):
    # Given the real agent on virtual time against a device API that never sees a claim
    clock = VirtualClock()
    api = _UnclaimedApi(clock)
    identity_file, _ = write_identity(tmp_path)
    agent = Agent(
        AgentConfig(api_url="http://api.invalid", identity_file=identity_file, state_dir=tmp_path / "state"),
        clock=clock,
        rng=random.Random(11),
        http=api,
        transport=FakeTransport(),
        system_info=lambda: dict(SYSTEM_INFO),
    )
    start = clock.monotonic()
    while clock.monotonic() - start < 1200:
        clock.advance(agent.step())
    # Then the simulator, with the same random source, polls at exactly the same moments
    simulated = replay.poll_times(replay.Schedule(), random.Random(11), until=1200)
    agent_times = [t - start for t in api.polls]
    assert len(agent_times) >= 20
    assert simulated[: len(agent_times)] == pytest.approx(agent_times, abs=1e-6)


def test_fixed5_polls_720_times_an_hour():
    fleet = fm.Fleet(devices=1000, days=2, power_on_hours=0, claim=NEVER_CLAIMED)
    exact = fm.simulate(fleet, replay.Schedule("fixed5", jitter=0.0), fm.Sampling(never_min=2, never_max=2))
    assert exact.first_hour == 720  # t = 0, 5, ..., 3595
    assert exact.first_day == 24 * 720
    assert exact.per_month_after == pytest.approx(30 * 24 * 720)
    assert exact.requests == 1000 * 2 * 24 * 720
    # with the agent's ±20 % jitter the mean wait is still 5 s
    jittered = fm.simulate(
        fleet, replay.Schedule("fixed5"), fm.Sampling(never_min=40, never_max=40, never_budget=0)
    )
    assert jittered.first_hour == pytest.approx(720, abs=4)


def test_jitter_free_outage_peak_is_the_fleet_at_t0():
    quiet = replay.outage(replay.Schedule("cap60", jitter=0.0), devices=1_000_000, seconds=120, samples=300)
    assert quiet.first_second == 1_000_000
    assert [t for t, n in enumerate(quiet.per_second) if n] == [0, 5, 15, 35, 75]  # 5, 10, 20, 40 s waits
    assert quiet.peak_after_first == 1_000_000
    jittered = replay.outage(replay.Schedule("cap60"), devices=1_000_000, seconds=100, samples=5000)
    assert jittered.first_second == 1_000_000  # every device polls at power-on, jitter or not
    assert 400_000 < jittered.peak_after_first < 600_000  # the 5 s wave spreads over [4, 6] s
    assert sum(jittered.per_second) == 5 * 1_000_000  # the 5th poll is at <= 90 s, the 6th at >= 108 s


def test_claim_to_online_is_the_wait_until_the_next_poll():
    claimed = fm.ClaimModel("uniform", scale=600, never=0.0)
    result = fm.simulate(
        fm.Fleet(devices=50, days=1, power_on_hours=0, claim=claimed),
        replay.Schedule("fixed5", jitter=0.0),
        fm.Sampling(claimed=500),
    )
    assert len(result.delays) == 500
    assert all(0 <= d < 5 for d in result.delays)
    assert result.percentile(50) == pytest.approx(2.5, abs=0.5)
    times = replay.poll_times(replay.Schedule(jitter=0.0), random.Random(1), until=16)
    assert times == [0, 5, 15, 35]  # claimed at t=16: online with the poll at 35, 19 s later


TEST_PRICES = {
    "api_gateway": {"requests": [{"up_to": 300e6, "price": 1.0}, {"up_to": math.inf, "price": 0.9}]},
    "lambda": {"per_million_requests": 0.2, "gb_seconds": [{"up_to": math.inf, "price": 0.00001}]},
    "dynamodb": {"per_million_read_request_units": 0.125, "per_million_write_request_units": 0.625},
    "cloudwatch_logs": {"per_gb_ingested": 0.5},
    "xray": {"per_million_traces": 5.0},
}


def test_the_bill_of_a_tiny_fleet_matches_a_hand_computation():
    # 10 devices, never claimed, polling every 5 s for one day, all powered on at t=0
    fleet = fm.Fleet(devices=10, days=1, power_on_hours=0, claim=NEVER_CLAIMED)
    result = fm.simulate(fleet, replay.Schedule("fixed5", jitter=0.0), fm.Sampling(never_min=1, never_max=1))
    assert result.requests == 10 * 17_280
    assert result.writes == 10 * 288  # lastPollAt at t = 0, 300, 600, ...
    workload = pm.Workload(memory_mb=512, billed_ms=10, read_units_per_poll=0.5, write_units_per_touch=1)
    bill = pm.bills(result, TEST_PRICES, workload)["first"]
    # 30 days: 5,184,000 requests and 86,400 writes
    assert bill["api_gateway"] == pytest.approx(5.184)  # 5.184 M x $1
    assert bill["lambda"] == pytest.approx(1.0368 + 0.2592)  # 5.184 M x $0.2 + 25,920 GB-s x $0.00001
    assert bill["dynamodb"] == pytest.approx(0.324 + 0.054)  # 2.592 M RRU x $0.125 + 86,400 WRU x $0.625/M
    assert bill["total"] == pytest.approx(6.858)
    assert bill["logs"] == pytest.approx(5.184e6 * 800 / 1e9 * 0.5)
    # API Gateway's second tier starts at 300 M requests a month
    assert pm.monthly_bill(400e6, 0, TEST_PRICES, workload)["api_gateway"] == pytest.approx(390.0)


def test_prices_file_names_its_sources_date_and_recheck():
    prices = pm.load_prices()
    assert prices["date"] and prices["recheck"] is True and "us-east-1" in prices["source"]
    for section in ("api_gateway", "lambda", "dynamodb"):
        assert prices[section]["url"].startswith("https://aws.amazon.com/")
    assert prices["api_gateway"]["requests"][-1]["up_to"] == math.inf
    assert pm.PRICES_RESOURCE == "prices.toml"


def test_durations_and_claim_specs_parse():
    assert (
        units.parse_duration("90s") == 90
        and units.parse_duration("1.5h") == 5400
        and units.parse_duration("0") == 0
    )
    claim = fm.parse_claim("lognormal:30m:1.2", never=0.2)
    assert (claim.kind, claim.scale, claim.sigma, claim.never) == ("lognormal", 1800, 1.2, 0.2)
    with pytest.raises(ValueError):
        units.parse_duration("24")
    with pytest.raises(ValueError):
        fm.parse_claim("uniform:10m:2", never=0)


def test_the_command_prints_the_side_by_side_table(tmp_path):
    out = tmp_path / "figures.json"
    result = CliRunner().invoke(
        simulate_command,
        [
            "--devices",
            "1000",
            "--days",
            "2",
            "--schedule",
            "agent",
            "--schedule",
            "ioto",
            "--samples",
            "200",
            "--no-sweep",
            "--no-storm",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "agent, 0.15x age" in result.output and "Ioto 1 s+0.25 s/try" in result.output
    assert "Power outage" in result.output and "The whole monthly bill" in result.output
    assert "IoT Core connectivity" in result.output
    assert out.exists()


def _small_study(monkeypatch, sweep: bool = False, progress=None):
    from fleetsim import study

    # Two growths instead of seven: the sweep's machinery, at a fraction of its cost.
    monkeypatch.setattr(study, "GROWTH_SWEEP", (0.15, 0.2))
    spec = study.StudySpec(
        fleet=fm.Fleet(devices=1000, days=1),
        schedules=("agent", "ioto"),
        samples=100,
        sweep=sweep,
        storm=False,
    )
    return study.run(spec, progress=progress)


def test_the_study_reports_its_progress_step_by_step(monkeypatch):
    seen: list[tuple[str, float]] = []
    result = _small_study(monkeypatch, sweep=True, progress=lambda what, share: seen.append((what, share)))
    shares = [share for _, share in seen]
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(shares)), "progress went backwards"
    steps = {what for what, _ in seen}
    assert {"fleet over 1 days: agent, 0.15x age", "power outage: Ioto 1 s+0.25 s/try"} <= steps
    assert "growth sweep: 0.2 x age" in steps
    assert result.sweep is not None and [row.growth for row in result.sweep] == [0.15, 0.2]


def test_buckets_turn_a_comb_into_its_level():
    from fleetsim.plot import buckets

    comb = [1000.0, 0.0] * 30  # what per-second counts of a sampled, jittered fleet look like
    assert buckets(comb, 10) == [500.0] * 6
    gap = buckets([0.0] * 10 + [5.0] * 10, 10)
    assert math.isnan(gap[0]) and gap[1] == 5.0  # an empty bucket is a gap, not a spike to a floor


def test_the_plot_keeps_its_legend_off_the_data_and_draws_bucket_means(monkeypatch, tmp_path):
    from fleetsim import plot

    result = _small_study(monkeypatch)
    fig = plot.figure(result)
    fig.canvas.draw()
    costs, top, bottom = fig.axes
    assert top.get_legend() is None and bottom.get_legend() is None
    assert len(costs.get_legend().get_texts()) == 8  # one stacked segment per component
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["agent, 0.15x age", "Ioto 1 s+0.25 s/try"]
    box = legend.get_window_extent()
    assert not box.overlaps(top.get_window_extent()) and not box.overlaps(bottom.get_window_extent())
    outage_steps = [p for p in top.patches if hasattr(p, "get_data")]
    assert len(outage_steps) == 2
    assert all(len(p.get_data().values) == 600 // plot.OUTAGE_BUCKET_S for p in outage_steps)
    plot.save(result, tmp_path / "fleet.png")
    assert (tmp_path / "fleet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
