"""The rate governor: one contract for pacing a client's HTTP tries, and its AIMD implementation.

The transport holds a governor around every HTTP try, requests and the opening of streams
alike, and tells it how the try ended::

    async with governor.slot():      # waits for a free slot and the next paced start
        ...send the request, read the status...
        governor.feedback(status, retry_after)   # status None on a transport error

:class:`Governor` is that contract (a Protocol: any object with these two methods will do);
:class:`RateGovernor` is the SDK's implementation: a cap on requests in flight, a token-bucket
pace and Retry-After pauses. Every client gets a :class:`RateGovernor` of its own unless
given one.

The control law, in short (details on :class:`RateGovernor`), is TCP congestion avoidance
applied to a request rate:

- time is cut into *rounds*, each the longer of ``decrease_window`` (1 s) and the smoothed
  round-trip time of the requests;
- **additive increase once per round**, never per response: a round that ended without a
  cut and in which the client used at least half of its rate adds ``increase`` (or closes
  half the gap to the last rate that drew a 429, when that is more; past that rate the step
  doubles each round, to find a lifted limit quickly);
- **multiplicative decrease at most once per round trip**: a 429 cuts the rate by
  ``decrease_factor`` only if its request started after the last cut (the 429s of requests
  sent at the old rate are the same news, told again); far above the limit the cut starts
  from the rate the server accepted since the last cut;
- **Retry-After** pauses every new start until the time the server named.

Why rounds of a second and not of one round trip: on a local network a round trip is a
millisecond, and a server's token bucket only shows an excess once its burst is spent, which
takes far longer; growing once per round trip would overshoot again. The old law grew on
every response, so at 20 requests/s it grew by 20/s every second and swung between 34 and
66/s against a 20/s limit. Why 0.7 and not 0.5 for ``decrease_factor`` (CUBIC's choice):
against a server with a small burst, halving spent most of each cycle far below the limit
(about 0.9 of it on average with a burst of a quarter second, against 0.99 with 0.7: the
token-bucket server of ``tests/test_governor.py`` on virtual time, 50 clients, 20/s).

API-agnostic; anyio primitives only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol, cast

import anyio
from attrs import frozen

from .checks import count, number
from .clock import now as clock_now

__all__ = ["Governor", "GovernorStats", "RateGovernor"]

#: Float tolerance on the token bucket (a token short by less than this is a whole token).
_TOKEN_EPSILON = 1e-9
#: A round in which the client started fewer than this share of what its rate allowed does
#: not grow the rate: the rate was not what held it back (TCP's congestion window validation).
_USED_SHARE = 0.5
#: Near the last limit, a round adds at most this share of the rate.
_NEAR_STEP = 0.05
#: A cut takes what the server accepted since the last cut as its base only when that is
#: less than this share of the pace: far above the limit, not near it.
_FAR_BELOW = 0.5
#: Weight of a new round-trip sample in the smoothed round-trip time (TCP's 1/8).
_RTT_GAIN = 0.125

#: The governor and start time of the try the current task holds a slot for; feedback() reads
#: it to tell a 429 of a request sent before the last cut from one sent after it.
_TRY: ContextVar[tuple[RateGovernor, float] | None] = ContextVar("aiocompute_governor_try")


class Governor(Protocol):
    """What the transport needs of a governor (implemented by :class:`RateGovernor`).

    ``slot()`` is held around each try: it may cap how many tries are in flight and pace
    their starts. ``feedback(status, retry_after)`` is called after each try that got an
    HTTP status (for an error inside a 2xx body, the status that error stands for), or with
    ``status=None`` after a try that failed to get one; not when a try is cancelled. The
    transport calls it inside the ``slot()`` block, in the task that holds the slot.
    """

    def slot(self) -> AbstractAsyncContextManager[object]:
        """Held around one try: waits for a free slot and the next paced start."""
        ...

    def feedback(self, status: int | None, retry_after: float | None) -> None:
        """Learn from the outcome of a try."""
        ...


@frozen
class GovernorStats:
    """Counters of a :class:`RateGovernor`.

    ``acquired``: requests let through; ``throttled``: 429 answers seen; ``decreases``: rate
    cuts made (a burst of 429s makes one); ``increases``: additive steps taken;
    ``in_flight``: requests currently holding a :meth:`RateGovernor.slot`.
    """

    acquired: int
    throttled: int
    decreases: int
    increases: int
    in_flight: int


def _positive(name: str, value: float | None, *, allow_none: bool = False) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"RateGovernor {name} must be a positive number, got None")
    return float(number(value, f"RateGovernor {name}", above=0))


class RateGovernor:
    """Paces one client's requests and backs off on 429 (AIMD, once per round).

    **Start.** With the defaults (``initial_rate=None, max_rate=None``) the governor starts
    *unlimited*: no pacing at all until the server first answers 429. At that moment it
    measures the request rate of the last ``measure_window`` seconds (or of the time it has
    been unlimited, if shorter) and starts pacing at that rate times ``decrease_factor``
    (0.7). Given ``initial_rate`` (or ``max_rate``), it paces from the first request.

    **Rounds.** The rate changes at most once per *round*: the longer of ``decrease_window``
    seconds and the smoothed round-trip time of the requests (measured from the start of a
    :meth:`slot` to its :meth:`feedback`).

    **Increase.** When a round ends without a cut, with at least one answer that is not a
    throttle (2xx, 3xx, 4xx other than 429), and the client started at least half of what
    the rate allowed in it, the rate grows once, up to ``max_rate``:

    - below the *ceiling* (the rate that drew the last 429) by the larger of the *step* and
      half the gap to it, so it comes back near the limit in a few rounds and then creeps;
      the step is ``increase``, or 5 % of the ceiling when that is less (a limit of 5/s is
      probed by 0.25/s, not by a fifth of itself);
    - at the ceiling by the step, then past it by the step doubled each further round
      without a 429, so a limit that lifted is found gone within seconds (at 20/s: +1, +1,
      +2, +4 ... per round).

    A governor that started unlimited (and has no ``max_rate``) drops pacing again when it
    has grown past its ceiling and the client no longer uses half of its rate, or after
    ``recover_after`` seconds without a 429. 5xx answers and transport errors change nothing.

    **Decrease.** A 429 multiplies the rate by ``decrease_factor`` (never below ``min_rate``)
    at most once per round trip: only a 429 to a request that started after the last cut
    cuts again. A 429 reported outside a :meth:`slot` (no start time known) cuts if
    ``decrease_window`` seconds have passed since the last cut. Either way a hundred requests
    in flight that all get 429 together cut the rate once, not a hundred times. When the
    server accepted less than half the pace since a cut one or two rounds before (a limit
    that appeared while the client ran at full speed, met again after each Retry-After
    pause), the cut starts from that accepted rate instead of the pace.

    **Retry-After.** A 429 or 503 with ``retry_after`` pauses *every* acquirer until
    ``now + retry_after`` (capped at ``max_pause`` seconds).

    **Concurrency.** With ``max_concurrency``, at most that many requests hold a
    :meth:`slot` at once.

    The transport uses it like this, around each HTTP try (see :class:`Governor`)::

        async with governor.slot():
            ...send the request, read the status...
            governor.feedback(status, retry_after)   # status None on a transport error

    (``await governor.acquire()`` paces without taking a concurrency slot.)

    ``clock`` (seconds; default the event loop's clock, which anyio's sleeps read too) and
    ``sleep`` are injectable for tests. The pacing is a token bucket holding at most
    ``burst`` requests. A governor belongs to one event loop.
    """

    def __init__(
        self,
        *,
        initial_rate: float | None = None,
        min_rate: float = 1.0,
        max_rate: float | None = None,
        increase: float = 1.0,
        decrease_factor: float = 0.7,
        decrease_window: float = 1.0,
        burst: float = 1.0,
        max_concurrency: int | None = None,
        max_pause: float = 60.0,
        recover_after: float | None = 30.0,
        measure_window: float = 1.0,
        clock: Callable[[], float] = clock_now,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._min_rate = cast(float, _positive("min_rate", min_rate))
        self._max_rate = _positive("max_rate", max_rate, allow_none=True)
        if self._max_rate is not None and self._max_rate < self._min_rate:
            raise ValueError(
                f"RateGovernor: max_rate ({max_rate}) must be >= min_rate ({min_rate})"
            )
        start = _positive("initial_rate", initial_rate, allow_none=True)
        if start is None:
            start = self._max_rate
        if start is not None and not (
            self._min_rate <= start <= (self._max_rate if self._max_rate else math.inf)
        ):
            raise ValueError(
                f"RateGovernor: initial_rate ({initial_rate}) must lie between min_rate "
                f"({min_rate}) and max_rate ({max_rate})"
            )
        number(increase, "RateGovernor increase", minimum=0)
        number(decrease_factor, "RateGovernor decrease_factor", above=0, below=1)
        number(decrease_window, "RateGovernor decrease_window", minimum=0, unit="seconds")
        burst_f = float(number(burst, "RateGovernor burst", minimum=1))
        if max_concurrency is not None:
            count(max_concurrency, "RateGovernor max_concurrency", minimum=1)
        self._max_pause = cast(float, _positive("max_pause", max_pause))
        self._recover_after = _positive("recover_after", recover_after, allow_none=True)
        self._measure_window = cast(float, _positive("measure_window", measure_window))

        self._increase = float(increase)
        self._decrease_factor = float(decrease_factor)
        self._decrease_window = float(decrease_window)
        self._burst = burst_f
        self._clock = clock
        self._sleep = sleep
        # Only a governor that was born unlimited may return to unlimited.
        self._can_unlimit = start is None and self._recover_after is not None

        now = clock()
        self._rate: float | None = start
        self._unlimited_since = now
        self._tokens = 1.0
        self._refilled_at = now
        self._not_before = -math.inf
        self._last_decrease: float | None = None
        # Requests started, and answers other than 429 (and 5xx), since the last cut.
        self._sent = 0
        self._accepted = 0
        self._last_throttle: float | None = None
        # The rate that drew the last 429, and the next step above it (doubles per round).
        self._ceiling: float | None = None
        self._probe = self._increase
        # The current round: when it began, how many requests started in it.
        self._round_start = now
        self._round_acquired = 0
        self._srtt: float | None = None
        # Recent acquisition times, kept only while unlimited, to measure the rate at the first
        # 429. Bounded: at high rates it covers less than the window, which measure() handles.
        self._recent: deque[float] = deque(maxlen=4096)

        # FIFO: paced acquirers are served in arrival order. fast_acquire: a free lock or
        # slot is taken without yielding to the event loop (a cancel is still seen); the
        # default yield cost a loop iteration on every request, and pacing waits in
        # acquire() itself. Waiters still queue in order.
        self._lock = anyio.Lock(fast_acquire=True)
        self._slots = (
            anyio.Semaphore(max_concurrency, fast_acquire=True)
            if max_concurrency is not None
            else None
        )
        self._acquired = 0
        self._throttled = 0
        self._decreases = 0
        self._increases = 0
        self._in_flight = 0

    def __repr__(self) -> str:
        rate = "unlimited" if self._rate is None else f"{self._rate:.3g}/s"
        return f"RateGovernor(rate={rate}, acquired={self._acquired}, throttled={self._throttled})"

    # -- read-only views ------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The current pace in requests/second, or None while unlimited."""
        return self._rate

    @property
    def paused_until(self) -> float | None:
        """The clock time before which no request starts (a Retry-After), or None."""
        return self._not_before if self._not_before > self._clock() else None

    @property
    def round_trip(self) -> float | None:
        """The smoothed round-trip time of the requests held in :meth:`slot`, in seconds
        (None before the first answer)."""
        return self._srtt

    @property
    def stats(self) -> GovernorStats:
        """A snapshot of the counters."""
        return GovernorStats(
            acquired=self._acquired,
            throttled=self._throttled,
            decreases=self._decreases,
            increases=self._increases,
            in_flight=self._in_flight,
        )

    # -- the transport's side --------------------------------------------------------------

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a concurrency slot (if ``max_concurrency``) and a pacing token for a request.

        The slot is taken first, so the paced start is close to the real send time; it is
        released when the block exits, whatever happens inside it. A :meth:`feedback` made
        inside the block knows when its request started (for the once-per-round-trip rules).
        """
        async with self._slots if self._slots is not None else nullcontext():
            await self.acquire()
            self._in_flight += 1
            marker = _TRY.set((self, self._clock()))
            try:
                yield
            finally:
                self._in_flight -= 1
                _TRY.reset(marker)

    async def acquire(self) -> None:
        """Wait until one more request may start (pacing and Retry-After pauses)."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._take(now)

    def try_acquire(self) -> bool:
        """Let one more request start now if nothing asks it to wait (no Retry-After pause,
        a pacing token at hand, nobody waiting in :meth:`acquire`); False means: await
        :meth:`acquire` instead."""
        if self._lock.locked():
            return False
        now = self._clock()
        if self._wait_needed(now) > 0:
            return False
        self._take(now)
        return True

    def feedback(self, status: int | None, retry_after: float | None = None) -> None:
        """Report how an attempt ended: its HTTP ``status`` (None on a transport error) and
        the server's Retry-After in seconds, if any."""
        now = self._clock()
        held = _TRY.get(None)
        started = held[1] if held is not None and held[0] is self else None
        if started is not None and status is not None:
            sample = max(0.0, now - started)
            self._srtt = (
                sample if self._srtt is None else self._srtt + _RTT_GAIN * (sample - self._srtt)
            )
        if status == 429:
            self._throttled += 1
            self._last_throttle = now
            self._cut(now, started)
            self._pause(now, retry_after)
        elif status == 503:
            self._pause(now, retry_after)
        elif status is not None and status < 500:
            self._accepted += 1
            self._grow(now)

    # -- internals ----------------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        if self._rate is not None and now > self._refilled_at:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate)
            self._refilled_at = now

    def _wait_needed(self, now: float) -> float:
        wait = self._not_before - now
        if self._rate is not None:
            self._refill(now)
            # The tolerance stops float dust from turning into endless micro-sleeps.
            if self._tokens < 1 - _TOKEN_EPSILON:
                wait = max(wait, (1 - self._tokens) / self._rate)
        return wait

    def _take(self, now: float) -> None:
        self._acquired += 1
        self._round_acquired += 1
        self._sent += 1
        if self._rate is None:
            self._recent.append(now)
        else:
            self._tokens -= 1

    def _measured_rate(self, now: float) -> float:
        recent = self._recent
        while recent and recent[0] < now - self._measure_window:
            recent.popleft()
        count = len(recent)
        if count == recent.maxlen:
            # Saturated: the deque spans less than the window.
            return count / max(now - recent[0], 1e-3)
        # Unlimited for less than the window (a client that just started): 18 requests in
        # its first 5 ms are 3,600/s, not 18/s.
        span = min(self._measure_window, now - self._unlimited_since)
        return count / max(span, 1e-3)

    def _clamp(self, rate: float) -> float:
        rate = max(self._min_rate, rate)
        return min(self._max_rate, rate) if self._max_rate is not None else rate

    def _round_length(self) -> float:
        return max(self._decrease_window, self._srtt or 0.0)

    def _new_round(self, now: float) -> None:
        self._round_start = now
        self._round_acquired = 0

    def _cut(self, now: float, started: float | None) -> None:
        last = self._last_decrease
        if last is not None:
            if started is not None:
                if started < last:
                    return  # sent at the old rate: this 429 is old news
            elif now - last < self._decrease_window:
                return
        self._last_decrease = now
        self._decreases += 1
        if self._rate is None:
            base = self._measured_rate(now)
            self._recent.clear()
            # Just throttled: start with an empty bucket.
            self._tokens = 0.0
            self._refilled_at = now
        else:
            self._refill(now)
            base = self._rate
            # Far above the limit (a limit that just appeared, with Retry-After pauses of
            # a second between cuts), what the server accepted since the last cut is the
            # better measure: one cut instead of ten. Only over one or two rounds, and only
            # far above: over longer spans, or near the limit, it is the client's own
            # average, below the limit, and would ratchet the rate down.
            elapsed = now - last if last is not None else 0.0
            length = self._round_length()
            if elapsed > 0 and length <= elapsed <= 2 * length:
                accepted = self._accepted / elapsed
                if self._sent and accepted < base * _FAR_BELOW:
                    base = accepted
        self._accepted = self._sent = 0
        self._rate = self._clamp(base * self._decrease_factor)
        # No traffic measured (base 0): the ceiling is where the rate starts.
        self._ceiling = max(base, self._rate)
        self._probe = min(self._increase, _NEAR_STEP * self._ceiling)
        self._new_round(now)

    def _grow(self, now: float) -> None:
        rate = self._rate
        if rate is None:
            return
        if (
            self._can_unlimit
            and self._last_throttle is not None
            and now - self._last_throttle >= cast(float, self._recover_after)
        ):
            self._unlimit(now)
            return
        elapsed = now - self._round_start
        if elapsed < self._round_length():
            return
        used = self._round_acquired >= _USED_SHARE * rate * elapsed
        self._new_round(now)
        ceiling = self._ceiling
        if not used:
            # Past the last limit, and the rate no longer holds the client back.
            if self._can_unlimit and ceiling is not None and rate > ceiling:
                self._unlimit(now)
            return
        if self._increase == 0 or (self._max_rate is not None and rate >= self._max_rate):
            return
        self._refill(now)
        if ceiling is not None and rate < ceiling:
            new = min(ceiling, rate + max(self._probe, (ceiling - rate) / 2))
        else:
            new = rate + self._probe
            # One step at the ceiling itself, then doubling: a server's burst hides an
            # excess for a while, so the first steps past the last limit stay small.
            if ceiling is None or rate > ceiling:
                self._probe *= 2
        self._rate = self._clamp(new)
        self._increases += 1

    def _unlimit(self, now: float) -> None:
        self._rate = None
        self._unlimited_since = now
        self._ceiling = None
        self._probe = self._increase
        self._recent.clear()

    def _pause(self, now: float, retry_after: float | None) -> None:
        if retry_after is None or not math.isfinite(retry_after) or retry_after <= 0:
            return
        until = now + min(retry_after, self._max_pause)
        if until > self._not_before:
            self._not_before = until
            # One request may go the moment the pause ends; the pace resumes from there.
            self._tokens = 1.0
            self._refilled_at = until
