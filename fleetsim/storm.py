"""The reconnect storm: a whole fleet powers back on at t=0 after a regional outage.

Each sampled device runs the agent's own waits (firmware.schedule): the random first-request delay,
the poll schedule (`Backoff`) while unclaimed, `throttled_delay` after a 429 (API Gateway's throttle
answers without a Retry-After), the MQTT reconnect backoff (`Reconnect`) and its rule for checking
with the device API (`should_check_service`; a throttled check goes back to MQTT, as the agent does).

Capacity is shared per 1 s bin: the device API route admits `rate` requests a second from a token
bucket of `burst`, IoT Core admits `connect_quota` CONNECTs a second while fewer than
`concurrent_quota` devices are connected; attempts beyond that in a bin fail at random. Sampled devices
stand for N/K each; capacities are compared with scaled counts.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from firmware import schedule
from fleetsim.replay import Tick, every

POLL, CONNECT, CHECK = 0, 1, 2
SETTLED_S = 900  # simulate at least this long: the unclaimed devices' fast window and its waves


@dataclass(frozen=True)
class StormSpec:
    devices: int = 1_000_000
    unclaimed: float = 0.10
    api_rate: float = 50.0  # the device poll route's throttle, requests/s
    api_burst: float = 100.0
    connect_quota: float = 500.0  # IoT Core CONNECTs per second per account
    concurrent_quota: float = 500_000.0  # IoT Core concurrent connections per account
    seconds: int = 4 * 3600
    claimed_samples: int = 20_000
    unclaimed_samples: int = 4_000
    seed: int = 7


@dataclass
class StormResult:
    spec: StormSpec
    api_offered: list[float] = field(default_factory=list)  # device API requests offered per second
    api_admitted: list[float] = field(default_factory=list)
    connects_offered: list[float] = field(default_factory=list)  # IoT CONNECTs offered per second
    connects_admitted: list[float] = field(default_factory=list)
    online: list[float] = field(default_factory=list)  # share of claimed devices online, end of each second
    checks: float = 0.0  # device API polls made by claimed devices checking after MQTT failures
    capped_by_concurrency: bool = False  # the concurrent-connection quota refused connects

    @property
    def peak_api_rps(self) -> float:
        return max(self.api_offered, default=0.0)

    @property
    def peak_connects_per_s(self) -> float:
        return max(self.connects_offered, default=0.0)

    def seconds_to_online(self, share: float) -> float:
        """Seconds until `share` of the claimed devices are online (inf if never within the horizon)."""
        for second, value in enumerate(self.online):
            if value >= share:
                return float(second + 1)
        return math.inf


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens = rate, max(burst, rate), max(burst, rate)

    def admit(self, offered: float) -> float:
        """Admit up to the tokens available this second; refill for the next one."""
        admitted = min(offered, self.tokens)
        self.tokens = min(self.burst, self.tokens - admitted + self.rate)
        return admitted


def simulate(spec: StormSpec, tick: Tick | None = None) -> StormResult:
    rng = random.Random(spec.seed)
    n_claimed = spec.devices * (1.0 - spec.unclaimed)
    k_claimed = spec.claimed_samples if n_claimed > 0 else 0
    k_unclaimed = spec.unclaimed_samples if spec.unclaimed > 0 else 0
    w_claimed = n_claimed / k_claimed if k_claimed else 0.0
    w_unclaimed = spec.devices * spec.unclaimed / k_unclaimed if k_unclaimed else 0.0

    # One heap of (time, device, action); devices 0..k_unclaimed-1 are unclaimed.
    backoffs = [schedule.Backoff(rng=rng) for _ in range(k_unclaimed)]
    throttled = [0] * k_unclaimed
    reconnects = [schedule.Reconnect(rng=rng) for _ in range(k_claimed)]
    heap: list[tuple[float, int, int]] = []
    for i in range(k_unclaimed):
        heap.append((schedule.first_poll_delay(rng), i, POLL))
    for j in range(k_claimed):
        heap.append((schedule.first_poll_delay(rng), k_unclaimed + j, CONNECT))
    heapq.heapify(heap)

    api = _Bucket(spec.api_rate, spec.api_burst)
    result = StormResult(spec)
    online = 0
    carry = 0.0
    done = every(spec.seconds, tick)
    for second in range(spec.seconds):
        due: list[tuple[float, int, int]] = []
        while heap and heap[0][0] < second + 1:
            due.append(heapq.heappop(heap))
        api_offered = sum(w_unclaimed if d < k_unclaimed else w_claimed for _, d, a in due if a != CONNECT)
        connects = sum(w_claimed for _, _, a in due if a == CONNECT)
        api_admitted = api.admit(api_offered)
        room = max(0.0, spec.concurrent_quota - online * w_claimed)
        if connects > room:
            result.capped_by_concurrency = True
        connects_admitted = min(connects, spec.connect_quota, room)
        p_api = api_admitted / api_offered if api_offered else 1.0
        # Exactly the capacity's worth of sampled connects gets in (fractions carried to the next second),
        # chosen at random among the attempts of this second.
        slots = connects_admitted / w_claimed + carry if w_claimed else 0.0
        admit = int(slots)
        carry = slots - admit if connects > connects_admitted else 0.0
        rng.shuffle(due)
        connected = 0
        for t, device, action in due:
            if action == POLL:
                if rng.random() < p_api:
                    throttled[device] = 0
                    wait = backoffs[device].next()
                else:
                    throttled[device] += 1
                    wait = schedule.throttled_delay(None, throttled[device], rng)
                    backoffs[device].age += wait
                heapq.heappush(heap, (t + wait, device, POLL))
            elif action == CONNECT:
                if connected < admit:
                    online += 1
                    connected += 1
                    continue
                reconnect = reconnects[device - k_unclaimed]
                wait = reconnect.next()
                heapq.heappush(heap, (t + wait, device, CHECK if reconnect.check_service() else CONNECT))
            else:  # a check: admitted -> still provisioned, connect at once; throttled -> back to MQTT
                result.checks += w_claimed
                if rng.random() < p_api:
                    heapq.heappush(heap, (t, device, CONNECT))
                else:
                    reconnect = reconnects[device - k_unclaimed]
                    heapq.heappush(heap, (t + reconnect.next(), device, CONNECT))
        result.api_offered.append(api_offered)
        result.api_admitted.append(api_admitted)
        result.connects_offered.append(connects)
        result.connects_admitted.append(connected * w_claimed)
        result.online.append(online / k_claimed if k_claimed else 1.0)
        done(second + 1)
        if online == k_claimed and second >= SETTLED_S:
            break  # everyone is back and the unclaimed devices are past their fast window
    if tick is not None:
        tick(1.0)
    return result
