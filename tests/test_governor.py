"""Tests for aiocompute._core.governor: RateGovernor's pacing, AIMD, pauses and slots."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiocompute._core.clock import now as clock_now
from aiocompute._core.governor import Governor, RateGovernor

pytestmark = pytest.mark.virtual_time


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


async def test_first_429_paces_at_the_measured_rate_times_the_factor() -> None:
    fake = FakeTime()
    gov = make(fake, measure_window=1.0, decrease_factor=0.5)
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


async def test_first_429_right_after_the_start_measures_over_the_time_run() -> None:
    # 20 requests in the first 20 ms are 1,000/s, not 20/s: pacing at 14/s would take
    # seconds to climb back to a limit of, say, 100/s.
    fake = FakeTime()
    gov = make(fake, measure_window=1.0)
    for _ in range(20):
        await gov.acquire()
        fake.now += 0.001
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(0.7 * 1000)


async def test_default_decrease_factor_is_0_7() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=20.0)
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(14.0)


async def test_burst_of_429s_makes_one_decrease_per_window() -> None:
    # Reported outside a slot (no start time known): the time window decides.
    fake = FakeTime()
    gov = make(fake, initial_rate=40.0, decrease_window=1.0, decrease_factor=0.5)
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


async def run_round(gov: RateGovernor, fake: FakeTime, *, seconds: float = 1.0) -> None:
    """One round of a client that uses its whole rate: requests paced by the governor for
    ``seconds``, each answered 200 at once."""
    end = fake.now + seconds
    while fake.now < end:
        await gov.acquire()
        gov.feedback(200, None)


async def test_additive_increase_is_once_per_round_not_per_response() -> None:
    # The old law added `increase` per answer: at 20 requests/s it grew by 20/s every
    # second and swung far past a server's limit.
    fake = FakeTime()
    gov = make(fake, initial_rate=20.0, increase=1.0)
    for _ in range(19):  # 19 answers within the first round (1 s)
        await gov.acquire()
        gov.feedback(200, None)
    assert gov.rate == pytest.approx(20.0)
    assert gov.stats.increases == 0
    await run_round(gov, fake)
    assert gov.rate == pytest.approx(21.0)  # one step for a round of ~20 answers
    assert gov.stats.increases == 1
    await run_round(gov, fake)
    assert gov.rate == pytest.approx(23.0)  # no limit seen yet: the probe doubles (+2)
    assert gov.stats.increases == 2


async def test_increase_up_to_max_rate_and_failures_are_neutral() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=10.0, max_rate=13.0, increase=1.0)
    await run_round(gov, fake)
    fake.now += 0.1
    gov.feedback(404, None)  # the server answered: it is not throttling us
    assert gov.rate == pytest.approx(11.0)
    fake.now += 2
    gov.feedback(500, None)
    gov.feedback(None, None)
    assert gov.rate == pytest.approx(11.0)  # failures are neutral
    for _ in range(5):
        await run_round(gov, fake)
    assert gov.rate == pytest.approx(13.0)
    assert gov.stats.increases == 2  # 11, then 13 (+2), then capped


async def test_no_increase_while_the_client_does_not_use_its_rate() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=20.0)
    for _ in range(10):  # 1 request/s against a rate of 20/s
        await gov.acquire()
        fake.now += 1.0
        gov.feedback(200, None)
    assert gov.rate == pytest.approx(20.0)
    assert gov.stats.increases == 0


async def test_after_a_cut_the_rate_closes_half_the_gap_then_probes() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=20.0, increase=1.0)
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(14.0)  # ceiling 20
    seen = []
    for _ in range(7):
        await run_round(gov, fake)
        seen.append(gov.rate)
    # 17, 18.5 (half the gap), then steps of 1 (5 % of 20) to the ceiling, one more step
    # past it, and from there the step doubles each round without a 429.
    assert seen == pytest.approx([17.0, 18.5, 19.5, 20.0, 21.0, 22.0, 24.0])


async def test_probe_step_is_at_most_5_percent_of_a_small_limit() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=5.0, min_rate=0.5, increase=1.0)
    gov.feedback(429, None)
    assert gov.rate == pytest.approx(3.5)
    seen = []
    for _ in range(6):
        await run_round(gov, fake)
        seen.append(gov.rate)
    assert seen == pytest.approx([4.25, 4.625, 4.875, 5.0, 5.25, 5.5])


async def test_a_429_sent_before_the_last_cut_does_not_cut_again() -> None:
    # Several 429s of one window count once; a 429 to a request sent after the cut is new
    # news and cuts again, however soon (once per round trip).
    fake = FakeTime()
    gov = make(fake, initial_rate=100.0, burst=10.0, decrease_factor=0.5)
    fake.now += 1  # a full bucket: ten starts at once
    all_in = anyio.Event()
    cut = anyio.Event()
    entered = 0

    async def old_request() -> None:
        nonlocal entered
        async with gov.slot():
            entered += 1
            if entered == 9:
                all_in.set()
            await cut.wait()
            gov.feedback(429, None)

    async def first_throttled() -> None:
        async with gov.slot():
            await all_in.wait()
            fake.now += 0.05
            gov.feedback(429, None)
            cut.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_throttled)
        for _ in range(9):
            tg.start_soon(old_request)
    assert gov.stats.throttled == 10
    assert gov.stats.decreases == 1
    assert gov.rate == pytest.approx(50.0)
    async with gov.slot():  # sent after the cut, 0.1 s later: well inside decrease_window
        fake.now += 0.05
        gov.feedback(429, None)
    assert gov.stats.decreases == 2
    assert gov.rate == pytest.approx(25.0)


async def test_far_above_the_limit_a_cut_goes_to_what_the_server_accepted() -> None:
    # A limit appears while the client runs at 400/s and the server asks for a second's
    # pause on each 429: cutting by the factor alone would take ten cuts, ten seconds.
    fake = FakeTime()
    gov = make(fake, initial_rate=400.0)
    async with gov.slot():
        gov.feedback(429, 1.0)
    assert gov.rate == pytest.approx(280.0)
    for _ in range(20):  # after the pause, 20 answers (the server's refilled burst)
        async with gov.slot():
            gov.feedback(200, None)
    async with gov.slot():
        gov.feedback(429, 1.0)
    elapsed = fake.now - 100.0
    assert 1.0 <= elapsed <= 2.0
    accepted = 20 / elapsed
    assert gov.rate == pytest.approx(0.7 * accepted)
    await run_round(gov, fake, seconds=3.0)
    rate = gov.rate
    assert rate is not None
    assert rate <= accepted  # back towards what the server took, not towards 400


async def test_near_the_limit_a_cut_is_by_the_factor() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=20.0)
    gov.feedback(429, None)  # 14/s
    for _ in range(15):  # paced: about 14/s accepted since, not far below the pace
        async with gov.slot():
            gov.feedback(200, None)
    before = gov.rate
    assert before is not None
    async with gov.slot():
        gov.feedback(429, None)
    assert 1.0 <= fake.now - 100.0 <= 2.0
    assert gov.rate == pytest.approx(before * 0.7)


async def test_round_trip_is_measured_inside_slots_and_lengthens_rounds() -> None:
    fake = FakeTime()
    gov = make(fake, initial_rate=50.0, decrease_window=0.5)
    assert gov.round_trip is None
    for _ in range(30):
        async with gov.slot():
            fake.now += 2.0  # a slow server: 2 s per answer
            gov.feedback(200, None)
    assert gov.round_trip == pytest.approx(2.0)
    # Rounds last one round trip (2 s), not decrease_window: the rate grew at most once per
    # 2 s (and not at all here, since one request in flight never uses 50/s).
    assert gov.stats.increases == 0


async def test_born_unlimited_drops_pacing_once_past_its_ceiling_and_unused() -> None:
    fake = FakeTime()
    gov = make(fake, increase=1.0)
    for _ in range(20):
        await gov.acquire()
        fake.now += 0.05
    gov.feedback(429, None)  # 20/s measured: paced at 14/s, ceiling 20
    assert gov.rate == pytest.approx(14.0)
    while gov.rate is not None and gov.rate <= 20.5:
        await run_round(gov, fake)
    assert gov.rate is not None
    # Past the ceiling; the client now wants 5 requests/s only.
    for _ in range(10):
        await gov.acquire()
        fake.now += 0.2
        gov.feedback(200, None)
    assert gov.rate is None


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
        await run_round(gov, fake)
    assert gov.rate == pytest.approx(6.0)
    for _ in range(10):  # unused
        await gov.acquire()
        fake.now += 10
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


@pytest.mark.virtual_time(False)  # the one test of pacing on the real clock
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
        ({"max_pause": float("inf")}, "max_pause"),
        ({"decrease_window": -1}, "decrease_window"),
        ({"decrease_window": float("inf")}, "decrease_window"),
    ],
)
def test_governor_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateGovernor(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": True}, "max_concurrency"),  # a bool is never a count
        ({"max_concurrency": 2.0}, "max_concurrency"),
        ({"increase": "1"}, "increase"),
        ({"burst": True}, "burst"),
        ({"decrease_factor": None}, "decrease_factor"),
    ],
)
def test_governor_arguments_of_the_wrong_kind_are_type_errors(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        RateGovernor(**kwargs)


def test_governor_repr_and_stats() -> None:
    gov = RateGovernor(initial_rate=12.0)
    assert repr(gov) == "RateGovernor(rate=12/s, acquired=0, throttled=0)"
    assert repr(RateGovernor()) == "RateGovernor(rate=unlimited, acquired=0, throttled=0)"
    stats = gov.stats
    assert (stats.acquired, stats.throttled, stats.decreases, stats.in_flight) == (0, 0, 0, 0)


# -- the law against a server's hard limit, on virtual time ---------------------------------


class TokenBucketServer:
    """A server's rate limit: ``rate`` requests/s with a burst of ``burst``, answering 429
    with the seconds until its next token as Retry-After (rounded up to whole seconds, as
    most servers send it, with ``whole_seconds``); off until :attr:`limited`."""

    def __init__(self, rate: float, burst: float, *, whole_seconds: bool = False) -> None:
        self.rate = rate
        self.whole_seconds = whole_seconds
        self.burst = burst
        self.tokens = burst
        self.refilled_at = 0.0
        self.limited = False
        self.log: list[tuple[float, int]] = []

    def limit(self, now: float) -> None:
        self.limited = True
        self.tokens = self.burst
        self.refilled_at = now

    def answer(self, now: float) -> tuple[int, float | None]:
        if self.limited:
            self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.rate)
            self.refilled_at = now
            if self.tokens < 1:
                self.log.append((now, 429))
                wait = (1 - self.tokens) / self.rate
                return 429, float(math.ceil(wait)) if self.whole_seconds else wait
            self.tokens -= 1
        self.log.append((now, 200))
        return 200, None

    def counts(self, start: float, end: float) -> tuple[int, int]:
        """(answered 200, answered 429) in ``[start, end)``."""
        ok = sum(1 for t, s in self.log if start <= t < end and s == 200)
        throttled = sum(1 for t, s in self.log if start <= t < end and s == 429)
        return ok, throttled


@pytest.mark.parametrize("whole_seconds", [False, True], ids=["exact", "whole-seconds"])
async def test_settles_under_a_hard_limit_and_recovers_when_it_lifts(whole_seconds: bool) -> None:
    # The case: 50 clients, a server limit of 20 requests/s. On the old law (a step
    # per answer) this drew 429 on about 30 % of the requests and swung between 20 and 42/s.
    loop = asyncio.get_running_loop()
    gov = RateGovernor(clock=loop.time)
    server = TokenBucketServer(rate=20.0, burst=20.0, whole_seconds=whole_seconds)
    round_trip = 0.1

    async def client() -> None:
        while True:
            async with gov.slot():
                await asyncio.sleep(round_trip / 2)
                status, retry_after = server.answer(loop.time())
                await asyncio.sleep(round_trip / 2)
                gov.feedback(status, retry_after)
            if retry_after is not None:
                await asyncio.sleep(retry_after)  # the retry policy honours it too

    tasks = [asyncio.ensure_future(client()) for _ in range(50)]
    try:
        await asyncio.sleep(2.0)
        full, _ = server.counts(1.0, 2.0)
        assert full >= 400  # 50 in flight, 0.1 s each: unlimited
        server.limit(loop.time())
        await asyncio.sleep(40.0)
        server.limited = False
        lifted = loop.time()
        ok, throttled = server.counts(lifted - 30, lifted)  # steady: 10 s after it appeared
        assert ok >= 0.9 * 20 * 30
        assert throttled <= 0.03 * (ok + throttled)
        rates: list[float | None] = []
        for _ in range(30):
            await asyncio.sleep(1.0)
            rates.append(gov.rate)
        assert rates[-1] is None  # unlimited again
        back = next(i for i, rate in enumerate(rates) if rate is None)
        ok, _ = server.counts(lifted + back + 1, lifted + back + 2)
        assert ok >= 0.9 * full
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_sdk_clock_is_the_running_loops() -> None:
    # On virtual time here: the loop's clock starts at 0, far from time.monotonic().
    assert clock_now() == asyncio.get_running_loop().time()
    await anyio.sleep(3600)
    assert clock_now() == asyncio.get_running_loop().time() == anyio.current_time()


def test_outside_a_loop_the_sdk_clock_is_time_monotonic() -> None:
    before = time.monotonic()
    assert before <= clock_now() <= time.monotonic()
