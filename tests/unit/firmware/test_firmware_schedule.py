import itertools
import random

import pytest

from firmware.schedule import (
    DEFAULT_CAP,
    FAST_WAIT,
    FAST_WINDOW,
    FIRST_POLL_SPREAD,
    GROWTH,
    MAX_RETRY_AFTER,
    THROTTLE_INITIAL,
    THROTTLE_SPREAD,
    Backoff,
    Reconnect,
    age_delay,
    cap_delay,
    first_poll_delay,
    next_delay,
    scheduled_delay,
    should_check_service,
    throttled_delay,
)


def test_power_on_poll_is_immediate():
    assert next_delay(0, random.Random(1)) == 0.0
    assert scheduled_delay(0) == 0.0


def test_schedule_is_a_fast_window_then_waits_growing_with_the_age_up_to_the_cap():
    # Given a backoff without jitter
    backoff = Backoff(initial=5, cap=3600, jitter=0, rng=random.Random(1))

    # When the device keeps getting "unclaimed" for two days
    waits, ages = [], []
    while backoff.age < 2 * 86400:
        ages.append(backoff.age)
        waits.append(backoff.next())

    # Then it waits 5, 10, 20 s, then 30 s until 10 minutes after power-on ...
    assert waits[:5] == [5, 10, 20, 30, 30]
    fast = [w for w, a in zip(waits, ages, strict=True) if a < FAST_WINDOW]
    assert fast[3:] == [FAST_WAIT] * (len(fast) - 3)
    # ... then 15 % of its age (never less than the fast wait), growing, and then stays at the cap
    slow = [(w, a) for w, a in zip(waits, ages, strict=True) if a >= FAST_WINDOW]
    assert all(w == pytest.approx(min(3600, max(FAST_WAIT, GROWTH * a))) for w, a in slow)
    assert all(a <= b for a, b in itertools.pairwise(waits[3:]))
    assert waits[-1] == 3600


@pytest.mark.parametrize(("attempt", "age"), [(1, 0), (2, 5), (5, 300), (9, 900), (40, 12000)])
def test_jitter_stays_within_twenty_percent_and_uses_the_whole_range(attempt, age):
    rng = random.Random(attempt)
    base = age_delay(age, attempt, cap=3600)

    samples = [next_delay(attempt, rng, cap=3600, age=age) for _ in range(5000)]

    assert all(0.8 * base <= s <= 1.2 * base for s in samples)
    assert min(samples) < 0.82 * base and max(samples) > 1.18 * base  # really jittered, not constant


def test_jitter_never_exceeds_the_cap_but_keeps_devices_spread_below_it():
    rng = random.Random(7)

    at_cap = [next_delay(40, rng, cap=3600, age=10**6) for _ in range(5000)]
    near_cap = [next_delay(11, rng, cap=3600, age=25_000) for _ in range(5000)]  # base 3750 → 3600

    for samples in (at_cap, near_cap):
        assert max(samples) <= 3600
        assert min(samples) >= 0.8 * 3600
        assert min(samples) < 0.82 * 3600  # spread over [0.8·cap, cap], not piled on the cap
        assert sum(1 for s in samples if s == 3600) < 10
    assert all(0.8 * DEFAULT_CAP <= cap_delay(rng) <= DEFAULT_CAP for _ in range(1000))


def test_a_configured_cap_is_honoured():
    backoff = Backoff(initial=5, cap=60, jitter=0.2, rng=random.Random(3))
    waits = [backoff.next() for _ in range(100)]
    assert max(waits) <= 60
    assert min(waits[60:]) >= 48  # past 400 s of age 15 % of it is beyond the cap


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


def test_huge_attempt_counts_and_ages_do_not_overflow():
    assert next_delay(10**6, random.Random(1), jitter=0, age=1e300) == DEFAULT_CAP
    assert scheduled_delay(10**6, 5, 60) == 60


def test_the_first_poll_waits_a_bounded_random_moment():
    rng = random.Random(4)
    waits = [first_poll_delay(rng) for _ in range(2000)]
    assert all(0 <= w <= FIRST_POLL_SPREAD for w in waits)
    assert min(waits) < 0.05 * FIRST_POLL_SPREAD and max(waits) > 0.95 * FIRST_POLL_SPREAD  # spread
    assert len(set(waits)) == len(waits)  # random, not one fixed offset
    assert all(first_poll_delay(rng, initial=0.1) <= 0.2 for _ in range(100))  # test configs stay fast
    assert first_poll_delay(rng, spread=0) == 0


def test_mqtt_reconnect_backoff_is_jittered_exponential_and_bounded():
    reconnect = Reconnect(initial=2, cap=300, rng=random.Random(8))
    for failures in range(1, 15):
        bound = min(300, 2 * 2 ** (failures - 1))
        waits = [
            Reconnect(2, 300, random.Random(failures * 100 + i), failures - 1).next() for i in range(300)
        ]
        assert all(bound / 2 <= w <= bound for w in waits)
        assert max(waits) - min(waits) > 0.4 * bound  # really spread
    assert [reconnect.next() for _ in range(3)] != [reconnect.next() for _ in range(3)]
    reconnect.reset()
    assert 1 <= reconnect.next() <= 2


def test_an_mqtt_failure_checks_the_service_only_on_doubling_counts():
    checks = [n for n in range(1, 200) if should_check_service(n)]
    assert checks == [8, 16, 32, 64, 128]


def test_throttled_answers_are_spread():
    rng = random.Random(9)
    with_header = [throttled_delay(60, 1, rng) for _ in range(2000)]
    assert all(60 <= w <= 60 * (1 + THROTTLE_SPREAD) for w in with_header)
    assert max(with_header) - min(with_header) > 50
    bare = [throttled_delay(None, n, rng) for n in (1, 2, 3) for _ in range(500)]
    assert all(THROTTLE_INITIAL / 2 <= w <= 4 * THROTTLE_INITIAL for w in bare)
    assert max(bare[:500]) <= THROTTLE_INITIAL < max(bare[1000:])  # grows with consecutive 429s


@pytest.mark.parametrize(
    ("initial", "cap", "jitter"), [(0, 10, 0.2), (10, 5, 0.2), (5, 10, 1.0), (5, 10, -0.1)]
)
def test_nonsense_parameters_are_refused(initial, cap, jitter):
    with pytest.raises(ValueError):
        Backoff(initial=initial, cap=cap, jitter=jitter)
