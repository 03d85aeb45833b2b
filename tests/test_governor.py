"""Tests for aiocompute._core.governor: RateGovernor's pacing, AIMD, pauses and slots."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiocompute._core.governor import Governor, RateGovernor


class Boom(Exception):
    """An error raised inside a slot."""


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def make(fake: FakeTime, **kwargs: Any) -> RateGovernor:
    return RateGovernor(clock=fake.clock, sleep=fake.sleep, **kwargs)


async def test_governor_starts_unlimited() -> None:
    fake = FakeTime()
    gov = make(fake)
    assert gov.rate is None
    for _ in range(500):
        await gov.acquire()
        gov.feedback(200, None)
    assert fake.sleeps == []
    assert gov.rate is None
    assert gov.stats.acquired == 500
    assert gov.stats.decreases == 0


async def test_first_429_paces_at_half_the_measured_rate() -> None:
    fake = FakeTime()
    gov = make(fake, measure_window=1.0)
    for _ in range(10):  # old traffic, outside the window
        await gov.acquire()
    fake.now += 5
    for _ in range(40):
        await gov.acquire()
        fake.now += 0.02
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(20.0)  # 40 requests in the last second, halved
    assert gov.stats.decreases == 1
    assert gov.stats.throttled == 1


async def test_burst_of_429s_makes_one_decrease_per_window() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=40.0, decrease_window=1.0)
    for _ in range(100):
        gov.feedback(429, None)
    assert gov.rate == pytest.approx(20.0)
    assert gov.stats.throttled == 100
    assert gov.stats.decreases == 1
    fake.now += 0.5
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(20.0)  # still the same window
    fake.now += 0.6
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(10.0)
    assert gov.stats.decreases == 2


async def test_additive_increase_up_to_max_rate() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=10.0, max_rate=13.0, increase=1.0)
    gov.feedback(200, None)
    gov.feedback(404, None)  # the server answered: it is not throttling us
    assert gov.rate == pytest.approx(12.0)
    gov.feedback(500, None)
    gov.feedback(None, None)
    assert gov.rate == pytest.approx(12.0)  # failures are neutral
    for _ in range(5):
        gov.feedback(201, None)
    assert gov.rate == pytest.approx(13.0)
    assert gov.stats.increases == 3


async def test_decrease_stops_at_min_rate() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=8.0, min_rate=2.0, decrease_window=0.0)
    for _ in range(10):
        gov.feedback(429, None)
    assert gov.rate == pytest.approx(2.0)
    assert gov.stats.decreases == 10


async def test_first_429_with_no_measured_traffic_uses_min_rate() -> None:
    fake = FakeTime()
    gov = make(fake, min_rate=3.0)
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(3.0)


async def test_pacing_spaces_requests() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=10.0)
    start = fake.now
    for _ in range(5):
        await gov.acquire()
    assert fake.now - start == pytest.approx(0.4)
    assert fake.sleeps == pytest.approx([0.1] * 4)


async def test_burst_lets_idle_credit_through() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=10.0, burst=3.0)
    fake.now += 10  # idle: the bucket fills up to the burst
    start = fake.now
    for _ in range(3):
        await gov.acquire()
    assert fake.now == start
    await gov.acquire()
    assert fake.now - start == pytest.approx(0.1)


async def test_retry_after_pauses_every_acquirer() -> None:
    fake = FakeTime()
    gov = make(fake)
    t0 = fake.now
    gov.feedback(503, 5.0)
    assert gov.paused_until == pytest.approx(t0 + 5)
    assert gov.rate is None  # 503 pauses but does not cut the rate
    finished: list[float] = []

    async def client() -> None:
        await gov.acquire()
        finished.append(fake.now)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(client)
    assert finished == pytest.approx([t0 + 5] * 4)
    assert gov.paused_until is None


async def test_try_acquire_takes_a_start_only_when_none_must_wait() -> None:
    fake = FakeTime()
    gov = make(fake, min_rate=2.0)
    assert gov.try_acquire() is True  # unlimited, not paused
    assert gov.stats.acquired == 1
    gov.feedback(503, 5.0)
    assert gov.try_acquire() is False  # paused: the caller must await acquire()
    assert gov.stats.acquired == 1
    fake.now += 5
    assert gov.try_acquire() is True
    gov.feedback(429, None)  # now paced: the bucket starts empty
    assert gov.rate is not None
    assert gov.try_acquire() is False
    await gov.acquire()  # waits for its token
    assert fake.sleeps
    assert gov.stats.acquired == 3
    fake.now += 1  # a token at hand (min_rate 2/s): no need to wait
    assert gov.try_acquire() is True
    assert gov.stats.acquired == 4


async def test_retry_after_on_429_pauses_then_paces() -> None:
    fake = FakeTime()
    gov = make(fake, min_rate=2.0)
    t0 = fake.now
    gov.feedback(429, 3.0)
    assert gov.rate == pytest.approx(2.0)
    finished: list[float] = []

    async def client() -> None:
        await gov.acquire()
        finished.append(fake.now)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(client)
    # The first goes when the pause ends, the others at the paced rate.
    assert finished == pytest.approx([t0 + 3, t0 + 3.5, t0 + 4])


async def test_retry_after_is_capped_and_bad_values_ignored() -> None:
    fake = FakeTime()
    gov = make(fake, max_pause=10.0)
    gov.feedback(503, float("nan"))
    gov.feedback(503, -4.0)
    assert gov.paused_until is None
    gov.feedback(503, 3600.0)
    assert gov.paused_until == pytest.approx(fake.now + 10.0)
    # A shorter hint never shortens a pause already in force.
    gov.feedback(503, 1.0)
    assert gov.paused_until == pytest.approx(fake.now + 10.0)


async def test_returns_to_unlimited_after_sustained_success() -> None:
    fake = FakeTime()
    gov = make(fake, recover_after=30.0)
    gov.feedback(429, None)
    assert gov.rate is not None
    fake.now += 10
    gov.feedback(200, None)
    assert gov.rate is not None
    fake.now += 21
    gov.feedback(200, None)
    assert gov.rate is None


async def test_explicit_rate_never_becomes_unlimited() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=5.0, max_rate=6.0)
    gov.feedback(429, None)
    fake.now += 1000
    for _ in range(10):
        gov.feedback(200, None)
    assert gov.rate == pytest.approx(6.0)


async def test_max_rate_alone_paces_from_the_start() -> None:
    fake = FakeTime()
    gov = make(fake, max_rate=4.0)
    assert gov.rate == pytest.approx(4.0)


async def test_concurrency_slots() -> None:
    gov = RateGovernor(max_concurrency=2)
    now = peak = 0
    in_flight_seen: list[int] = []

    async def request() -> None:
        nonlocal now, peak
        async with gov.slot():
            in_flight_seen.append(gov.stats.in_flight)
            now += 1
            peak = max(peak, now)
            await anyio.sleep(0.005)
            now -= 1
            gov.feedback(200, None)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(request)
    assert peak == 2
    assert max(in_flight_seen) == 2
    assert gov.stats.in_flight == 0
    assert gov.stats.acquired == 8


async def test_rate_governor_serves_the_transports_contract() -> None:
    # What the transport does around each try, through the Governor protocol only.
    fake = FakeTime()
    governor: Governor = make(fake, max_concurrency=1)
    async with governor.slot():
        governor.feedback(429, 2.0)
    gov = governor
    assert isinstance(gov, RateGovernor)
    assert gov.stats.acquired == 1
    assert gov.stats.throttled == 1
    assert gov.paused_until == pytest.approx(fake.now + 2.0)
    async with governor.slot():  # waits out the pause on the governor's clock
        pass
    assert fake.sleeps == pytest.approx([2.0])


async def test_slot_is_released_on_error_and_cancel() -> None:
    gov = RateGovernor(max_concurrency=1)
    with pytest.raises(Boom):
        async with gov.slot():
            raise Boom("inside")
    with anyio.move_on_after(0.01):
        async with gov.slot():
            await anyio.sleep(10)
    assert gov.stats.in_flight == 0
    with anyio.fail_after(1):
        async with gov.slot():
            pass


async def test_real_clock_pacing() -> None:
    gov = RateGovernor(initial_rate=100.0)
    start = anyio.current_time()
    with anyio.fail_after(5):
        for _ in range(6):
            await gov.acquire()
    assert anyio.current_time() - start >= 0.045


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_rate": 0}, "min_rate"),
        ({"min_rate": 5.0, "max_rate": 2.0}, "max_rate"),
        ({"initial_rate": 0.5, "min_rate": 1.0}, "initial_rate"),
        ({"initial_rate": 50.0, "max_rate": 10.0}, "initial_rate"),
        ({"decrease_factor": 1.0}, "decrease_factor"),
        ({"decrease_factor": 0}, "decrease_factor"),
        ({"increase": -1}, "increase"),
        ({"burst": 0.5}, "burst"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"max_pause": float("inf")}, "max_pause"),
        ({"decrease_window": -1}, "decrease_window"),
    ],
)
def test_governor_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateGovernor(**kwargs)


def test_governor_repr_and_stats() -> None:
    gov = RateGovernor(initial_rate=12.0)
    assert repr(gov) == "RateGovernor(rate=12/s, acquired=0, throttled=0)"
    assert repr(RateGovernor()) == "RateGovernor(rate=unlimited, acquired=0, throttled=0)"
    stats = gov.stats
    assert (stats.acquired, stats.throttled, stats.decreases, stats.in_flight) == (0, 0, 0, 0)
