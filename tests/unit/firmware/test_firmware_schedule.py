import random

import pytest

from firmware.schedule import (
    DEFAULT_CAP,
    MAX_RETRY_AFTER,
    Backoff,
    cap_delay,
    next_delay,
    scheduled_delay,
)


def test_power_on_poll_is_immediate():
    assert next_delay(0, random.Random(1)) == 0.0
    assert scheduled_delay(0) == 0.0


def test_schedule_starts_at_five_seconds_and_doubles_up_to_the_cap():
    # Given a backoff without jitter
    backoff = Backoff(initial=5, cap=3600, jitter=0, rng=random.Random(1))

    # When the device keeps getting "unclaimed"
    waits = [backoff.next() for _ in range(12)]

    # Then it waits 5 s, doubling, and then stays at the cap
    assert waits == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]


@pytest.mark.parametrize("attempt", [1, 2, 5, 9])
def test_jitter_stays_within_twenty_percent_and_uses_the_whole_range(attempt):
    rng = random.Random(attempt)
    base = scheduled_delay(attempt, cap=3600)

    samples = [next_delay(attempt, rng, cap=3600) for _ in range(5000)]

    assert all(0.8 * base <= s <= 1.2 * base for s in samples)
    assert min(samples) < 0.82 * base and max(samples) > 1.18 * base  # really jittered, not constant


def test_jitter_never_exceeds_the_cap_but_keeps_devices_spread_below_it():
    rng = random.Random(7)

    at_cap = [next_delay(40, rng, cap=3600) for _ in range(5000)]
    near_cap = [next_delay(11, rng, cap=3600) for _ in range(5000)]  # base 5120 → capped at 3600

    for samples in (at_cap, near_cap):
        assert max(samples) <= 3600
        assert min(samples) >= 0.8 * 3600
        assert min(samples) < 0.82 * 3600  # spread over [0.8·cap, cap], not piled on the cap
        assert sum(1 for s in samples if s == 3600) < 10
    assert all(0.8 * DEFAULT_CAP <= cap_delay(rng) <= DEFAULT_CAP for _ in range(1000))


def test_a_configured_cap_is_honoured():
    backoff = Backoff(initial=5, cap=60, jitter=0.2, rng=random.Random(3))
    waits = [backoff.next() for _ in range(50)]
    assert max(waits) <= 60
    assert min(waits[10:]) >= 48


def test_server_retry_after_wins_over_the_schedule():
    rng = random.Random(1)
    assert next_delay(1, rng, retry_after=300) == 300  # longer than the schedule
    assert next_delay(20, rng, retry_after=2) == 2  # shorter than the schedule
    assert next_delay(20, rng, retry_after=7200, cap=3600) == 7200  # even beyond the cap
    assert next_delay(1, rng, retry_after=10**9) == MAX_RETRY_AFTER  # but not forever


@pytest.mark.parametrize("retry_after", [None, 0, -5])
def test_missing_or_zero_retry_after_means_the_local_schedule(retry_after):
    assert 4 <= next_delay(1, random.Random(1), retry_after=retry_after) <= 6


def test_reboot_restarts_the_schedule():
    backoff = Backoff(rng=random.Random(5))
    for _ in range(10):
        backoff.next()

    backoff.reset()

    assert 4 <= backoff.next() <= 6
    assert backoff.attempt == 1


def test_at_cap_jumps_to_the_cap_and_stays_there_until_reset():
    backoff = Backoff(initial=5, cap=3600, jitter=0, rng=random.Random(1))
    backoff.next()

    assert backoff.at_cap() == 3600
    assert backoff.next() == 3600
    assert backoff.at_cap(retry_after=30) == 30
    backoff.reset()
    assert backoff.next() == 5


def test_the_same_seed_replays_the_same_schedule():
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next() for _ in range(30)] == [second.next() for _ in range(30)]


def test_huge_attempt_counts_do_not_overflow():
    assert next_delay(10**6, random.Random(1), jitter=0) == DEFAULT_CAP


@pytest.mark.parametrize(
    ("initial", "cap", "jitter"), [(0, 10, 0.2), (10, 5, 0.2), (5, 10, 1.0), (5, 10, -0.1)]
)
def test_nonsense_parameters_are_refused(initial, cap, jitter):
    with pytest.raises(ValueError):
        Backoff(initial=initial, cap=cap, jitter=jitter)
