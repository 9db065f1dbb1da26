"""The fleet simulator replays the agent's schedule code and counts and prices correctly."""

from __future__ import annotations

import pytest

from bench import fleet as sim
from firmware import schedule


def test_backoff_replays_the_agents_next_delay(monkeypatch):
    calls = []
    real = schedule.next_delay

    def recording(attempt, rng, **kw):
        calls.append(attempt)
        return real(attempt, rng, **kw)

    monkeypatch.setattr(schedule, "next_delay", recording)
    sim.simulate(sim.Fleet(devices=100, samples=20, days=1), "backoff", cap=60)
    assert calls and calls[:3] == [0, 1, 2]


def test_fixed5_polls_720_times_an_hour_when_never_claimed():
    result = sim.simulate(sim.Fleet(devices=10, samples=10, days=2, never_claimed=1.0), "fixed5")
    assert result.polls_first_hour == 721  # at power-on, then every 5 s for an hour
    assert result.delays == []


def test_jitter_free_outage_peak_is_the_whole_fleet_in_one_second():
    peak = sim.outage_peak(50_000, jitter=0.0, seconds=600, samples=200)
    assert peak["first_second"] == 50_000 and peak["peak_after_first"] == 50_000
    jittered = sim.outage_peak(50_000, jitter=0.2, seconds=600, samples=2000)
    assert jittered["first_second"] == 50_000 and jittered["peak_after_first"] < 50_000


def test_monthly_cost_matches_a_hand_computation():
    prices = {
        "prices": {
            "http_api_per_million": 1.0,
            "lambda_requests_per_million": 0.2,
            "lambda_arm_gb_second": 0.00001,
            "lambda_memory_gb": 0.5,
            "lambda_duration_ms": 20,
            "dynamodb_on_demand_read_per_million": 0.125,
            "dynamodb_read_units_per_poll": 0.5,
        }
    }
    cost = sim.monthly_cost(2_000_000, prices)
    # 2 M requests: API 2.00; Lambda 0.40 + 2e6 x 0.5 GB x 0.02 s x 1e-5 = 0.20; DynamoDB 1e6 RRU = 0.125
    assert cost["api_gateway"] == pytest.approx(2.0)
    assert cost["lambda"] == pytest.approx(0.6)
    assert cost["dynamodb"] == pytest.approx(0.125)
    assert cost["total"] == pytest.approx(2.725)


def test_claim_to_online_delay_is_the_wait_until_the_next_poll():
    result = sim.simulate(
        sim.Fleet(devices=1, samples=200, never_claimed=0.0, claim_median_minutes=2), "fixed5"
    )
    assert all(0 <= d <= 5 for d in result.delays) and len(result.delays) == 200


def test_prices_file_has_its_source_and_date():
    prices = sim.load_prices()
    assert prices["source"] and prices["date"] and prices["prices"]["http_api_per_million"] > 0
