"""The whole bill, the schedule's goals, the reconnect storm and the bench keys, as the simulator computes
them; and the agent's storm guards (first-poll delay, reconnect jitter) in the real agent."""

from __future__ import annotations

import math
import random

import pytest

from bench import economics
from firmware import schedule
from firmware.agent import Agent
from firmware.api import Response
from firmware.clock import VirtualClock
from firmware.config import AgentConfig
from fleetsim import cost, replay, storm, study
from fleetsim import fleet as fm
from fleetsim import prices as pm
from tests.unit.firmware.firmware_fakes import SYSTEM_INFO, FakeTransport, write_identity

PRICES = pm.load_prices()


def test_the_whole_bill_sums_its_components_and_every_price_names_its_source():
    bill = cost.fleet_bill(1_000_000, 5e8, 1e7, PRICES, pm.Workload())
    assert bill.cost["total"] == pytest.approx(sum(bill.cost[c] for c in cost.COMPONENTS))
    assert all(bill.cost[c] > 0 for c in cost.COMPONENTS)
    assert sum(bill.shares.values()) == pytest.approx(1.0)
    for section in ("api_gateway", "lambda", "dynamodb", "iot_core"):
        assert PRICES[section]["url"].startswith("https://aws.amazon.com/")
    assert (
        PRICES["quotas"]["iot_url"].startswith("https://docs.aws.amazon.com/") and PRICES["quotas"]["checked"]
    )


def test_an_online_idle_device_costs_at_most_one_and_a_half_connectivity_floors():
    floor = cost.connectivity_floor(PRICES)
    assert floor == pytest.approx(43_200 * 0.08 / 1e6)  # a month of connection-minutes at $0.08 per million
    # from the presence rates the agent's code states (firmware.config), and from prices.toml's fallback
    for usage in (
        cost.presence_usage("floor", PRICES),
        cost.online_usage(PRICES["presence"]["floor"], PRICES),
    ):
        assert floor < cost.price(usage, PRICES)["total"] <= 1.5 * floor
    today = cost.price(cost.presence_usage("today", PRICES), PRICES)["total"]
    assert today > 50 * floor  # status + shadow every 30 s, each through a rule, Lambda and DynamoDB


def test_the_bill_follows_the_presence_parameters():
    chatty = dict(PRICES["presence"]["floor"], status_messages_per_day=100)
    quiet = cost.online_usage(PRICES["presence"]["floor"], PRICES)
    loud = cost.online_usage(chatty, PRICES)
    assert loud.messages - quiet.messages == pytest.approx(99 * 30)
    assert loud.rules - quiet.rules == pytest.approx(99 * 30) and loud.read_units > quiet.read_units


def test_the_agents_schedule_meets_every_goal_in_the_simulator():
    result = fm.simulate(
        fm.Fleet(devices=1_000_000, days=8), replay.Schedule("agent"), fm.Sampling(claimed=4000, seed=3)
    )
    figures = study.goal_figures(result)
    assert study.meets(figures), figures
    # ... where the previous schedule missed the poll budget and the 1 h cap the latency
    today = study.goal_figures(
        fm.simulate(fm.Fleet(days=2), replay.Schedule("cap60"), fm.Sampling(claimed=500))
    )
    assert today["polls_day1"] > 1000
    hour = study.goal_figures(
        fm.simulate(fm.Fleet(days=2), replay.Schedule("cap3600"), fm.Sampling(claimed=2000))
    )
    assert hour["p50_within_10min_s"] > study.GOALS["p50_within_10min_s"]


def test_owners_who_replug_only_shorten_the_wait():
    result = fm.simulate(
        fm.Fleet(devices=10_000, days=1), replay.Schedule("cap3600"), fm.Sampling(claimed=1000)
    )
    assert 0 < result.replug_share < 1
    assert all(r <= d for r, d in zip(result.replugged_delays, result.delays, strict=True))


def test_the_storm_respects_the_throttle_and_the_quota_and_gets_everyone_online():
    spec = storm.StormSpec(
        devices=100_000,
        api_rate=200,
        api_burst=400,
        connect_quota=2000,
        seconds=1800,
        claimed_samples=2000,
        unclaimed_samples=500,
    )
    result = storm.simulate(spec)
    assert all(a <= 400 + 1e-6 for a in result.api_admitted)
    weight = 90_000 / 2000  # claimed devices one sampled device stands for
    assert all(c <= 2000 + weight for c in result.connects_admitted)  # fractions carried to the next second
    assert sum(result.connects_admitted[:10]) <= 10 * 2000 + weight
    assert result.peak_api_rps > 200 and result.peak_connects_per_s > 2000  # the storm did exceed both
    assert sum(result.connects_admitted) == pytest.approx(90_000)  # every claimed device connected once
    assert 90_000 / 2000 < result.seconds_to_online(0.99) < math.inf
    # with a connect quota of 10 % of the fleet the same storm never lets them all in
    capped = storm.simulate(
        storm.StormSpec(
            devices=100_000, concurrent_quota=10_000, seconds=300, claimed_samples=1000, unclaimed_samples=100
        )
    )
    assert capped.capped_by_concurrency and capped.seconds_to_online(0.99) == math.inf


def test_bench_keys_are_numbers():
    keys = economics.run(devices=10_000, days=2, samples=200, storm=False)
    keys.update(
        economics.coldstart_keys(
            {"owner API": {"ratio_to_boto3": 1.4}, "device API (poll)": {"ratio_to_boto3": 1.1}}
        )
    )
    wanted = {
        "cost.online_idle_device_month_usd",
        "cost.connectivity_floor_device_month_usd",
        "cost.fleet_month_usd",
        "schedule.never_claimed_polls_day1",
        "schedule.never_claimed_polls_month_after",
        "schedule.p50_claim_within_10min_s",
        "schedule.p50_all_claims_s",
        "coldstart.owner_api_ratio",
        "coldstart.device_poll_ratio",
    }
    assert wanted <= set(keys)
    assert all(isinstance(keys[k], float) and math.isfinite(keys[k]) for k in wanted)
    storm_keys = study.key_figures(_storm_only_study())
    for key in (
        "storm.peak_device_api_rps",
        "storm.device_api_throttle_rps",
        "storm.peak_iot_connects_per_s",
        "storm.iot_connect_quota_per_s",
        "storm.minutes_to_99pct_online",
    ):
        assert isinstance(storm_keys[key], float)


def _storm_only_study() -> study.Study:
    s = study.Study(study.StudySpec(), PRICES, pm.Workload(), [], {}, [])
    s.storm = storm.simulate(
        storm.StormSpec(devices=10_000, seconds=600, claimed_samples=300, unclaimed_samples=50)
    )
    return s


class _Api:
    """The device API as the agent's Http: every poll gets `answer`; records the virtual time of each."""

    def __init__(self, clock: VirtualClock, answer: dict | None = None) -> None:
        self.clock, self.polls = clock, []
        self.answer = answer or {"status": "unclaimed", "retryAfter": 0}

    def post(self, url, body, headers, timeout):
        self.polls.append(self.clock.monotonic())
        return Response(200, dict(self.answer))


def test_the_agent_waits_a_bounded_random_moment_before_its_first_poll(tmp_path):
    firsts = []
    for seed in range(12):
        clock = VirtualClock()
        api = _Api(clock)
        identity_file, _ = write_identity(tmp_path / str(seed))
        agent = Agent(
            AgentConfig(
                api_url="http://api.invalid", identity_file=identity_file, state_dir=tmp_path / f"s{seed}"
            ),
            clock=clock,
            rng=random.Random(seed),
            http=api,
            transport=FakeTransport(),
            system_info=lambda: dict(SYSTEM_INFO),
        )
        start = clock.monotonic()
        agent.run(max_steps=1)
        firsts.append(api.polls[0] - start)
    assert all(0 <= f <= schedule.FIRST_POLL_SPREAD for f in firsts)
    assert len(set(firsts)) == len(firsts) and max(firsts) - min(firsts) > 2  # random, not one offset


def test_a_broker_that_keeps_refusing_costs_a_handful_of_polls_not_one_per_reconnect(tmp_path):
    # Given a device with acknowledged credentials whose broker refuses 40 connects in a row
    from firmware.credentials import Credentials, CredentialStore
    from tests.unit.firmware.firmware_fakes import provisioned

    CredentialStore(tmp_path / "state").save(Credentials.from_poll(provisioned()).with_ack())
    clock = VirtualClock()
    api = _Api(clock, {"status": "active", "retryAfter": 0})
    identity_file, _ = write_identity(tmp_path)
    transport = FakeTransport(refuse=40)
    agent = Agent(
        AgentConfig(api_url="http://api.invalid", identity_file=identity_file, state_dir=tmp_path / "state"),
        clock=clock,
        rng=random.Random(5),
        http=api,
        transport=transport,
        system_info=lambda: dict(SYSTEM_INFO),
    )
    waits = []
    while len(transport.connects) < 41 and len(waits) < 200:
        waits.append(agent.step())
        clock.advance(waits[-1])
    # Then it asked the device API only on the 8th, 16th and 32nd failure, and its waits were jittered
    assert len(transport.connects) == 41 and len(api.polls) == 3
    reconnects = [w for w in waits if w > 0][:6]
    assert all(2 ** (n - 1) <= w <= 2**n for n, w in enumerate(reconnects, start=1))  # [b/2, b], b = 2^n
    assert len(set(reconnects)) == len(reconnects)
