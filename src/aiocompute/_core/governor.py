"""The rate governor: one contract for pacing a client's HTTP tries, and its AIMD implementation.

The transport holds a governor around every HTTP try, requests and the opening of streams
alike, and tells it how the try ended::

    async with governor.slot():      # waits for a free slot and the next paced start
        ...send the request, read the status...
        governor.feedback(status, retry_after)   # status None on a transport error

:class:`Governor` is that contract (a Protocol: any object with these two methods will do);
:class:`RateGovernor` is the SDK's implementation: a cap on requests in flight, a token-bucket
pace that backs off on 429 (additive increase, multiplicative decrease) and Retry-After
pauses. Every client gets a :class:`RateGovernor` of its own unless given one.

API-agnostic; anyio primitives only.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Protocol, cast

import anyio
from attrs import frozen

from .checks import number

__all__ = ["Governor", "GovernorStats", "RateGovernor"]

#: Float tolerance on the token bucket (a token short by less than this is a whole token).
_TOKEN_EPSILON = 1e-9


class Governor(Protocol):
    """What the transport needs of a governor (implemented by :class:`RateGovernor`).

    ``slot()`` is held around each try: it may cap how many tries are in flight and pace
    their starts. ``feedback(status, retry_after)`` is called after each try that got an
    HTTP status (for an error inside a 2xx body, the status that error stands for), or with
    ``status=None`` after a try that failed to get one; not when a try is cancelled.
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
        raise ValueError(f"RateGovernor: {name} must be a positive number, got None")
    return float(number(value, f"RateGovernor {name}", above=0))


class RateGovernor:
    """Paces one client's requests and backs off on 429 (AIMD).

    **Start.** With the defaults (``initial_rate=None, max_rate=None``) the governor starts
    *unlimited*: no pacing at all until the server first answers 429. At that moment it
    measures the request rate of the last ``measure_window`` seconds and starts pacing at that
    rate times ``decrease_factor``. Given ``initial_rate`` (or ``max_rate``), it paces from the
    first request.

    **Increase.** Every answer that is not a throttle (2xx, 3xx, 4xx other than 429) adds
    ``increase`` requests/second, up to ``max_rate``. A governor that started unlimited
    (and has no ``max_rate``) drops pacing again after ``recover_after`` seconds without a 429.
    5xx answers and transport errors (``status=None``) change nothing.

    **Decrease.** A 429 multiplies the rate by ``decrease_factor`` (never below ``min_rate``).
    All 429s within ``decrease_window`` seconds of the last cut count as one: a hundred
    requests in flight that all get 429 together cut the rate once, not a hundred times.

    **Retry-After.** A 429 or 503 with ``retry_after`` pauses *every* acquirer until
    ``now + retry_after`` (capped at ``max_pause`` seconds).

    **Concurrency.** With ``max_concurrency``, at most that many requests hold a
    :meth:`slot` at once.

    The transport uses it like this, around each HTTP try (see :class:`Governor`)::

        async with governor.slot():
            ...send the request, read the status...
            governor.feedback(status, retry_after)   # status None on a transport error

    (``await governor.acquire()`` paces without taking a concurrency slot.)

    ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests. The pacing is a
    token bucket holding at most ``burst`` requests. A governor belongs to one event loop.
    """

    def __init__(
        self,
        *,
        initial_rate: float | None = None,
        min_rate: float = 1.0,
        max_rate: float | None = None,
        increase: float = 1.0,
        decrease_factor: float = 0.5,
        decrease_window: float = 1.0,
        burst: float = 1.0,
        max_concurrency: int | None = None,
        max_pause: float = 60.0,
        recover_after: float | None = 30.0,
        measure_window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
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
        if isinstance(increase, bool) or not isinstance(increase, (int, float)):
            raise ValueError("RateGovernor: increase must be a number >= 0")
        if not math.isfinite(increase) or increase < 0:
            raise ValueError(f"RateGovernor: increase must be a number >= 0, got {increase!r}")
        if not isinstance(decrease_factor, (int, float)) or not 0 < decrease_factor < 1:
            raise ValueError(
                f"RateGovernor: decrease_factor must be between 0 and 1 (exclusive), "
                f"got {decrease_factor!r}"
            )
        if not isinstance(decrease_window, (int, float)) or decrease_window < 0:
            raise ValueError(
                f"RateGovernor: decrease_window must be >= 0 seconds, got {decrease_window!r}"
            )
        burst_f = cast(float, _positive("burst", burst))
        if burst_f < 1:
            raise ValueError(f"RateGovernor: burst must be >= 1, got {burst!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"RateGovernor: max_concurrency must be None or an int >= 1, "
                f"got {max_concurrency!r}"
            )
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

        self._rate: float | None = start
        self._tokens = 1.0
        self._refilled_at = clock()
        self._not_before = -math.inf
        self._last_decrease: float | None = None
        self._last_throttle: float | None = None
        # Recent acquisition times, kept only while unlimited, to measure the rate at the first
        # 429. Bounded: at high rates it covers less than the window, which measure() handles.
        self._recent: deque[float] = deque(maxlen=4096)

        # FIFO: paced acquirers are served in arrival order.
        self._lock = anyio.Lock()
        self._slots = anyio.Semaphore(max_concurrency) if max_concurrency is not None else None
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
        released when the block exits, whatever happens inside it.
        """
        async with self._slots if self._slots is not None else nullcontext():
            await self.acquire()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

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
        if status == 429:
            self._throttled += 1
            self._last_throttle = now
            self._cut(now)
            self._pause(now, retry_after)
        elif status == 503:
            self._pause(now, retry_after)
        elif status is not None and status < 500:
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
        return count / self._measure_window

    def _clamp(self, rate: float) -> float:
        rate = max(self._min_rate, rate)
        return min(self._max_rate, rate) if self._max_rate is not None else rate

    def _cut(self, now: float) -> None:
        if self._last_decrease is not None and now - self._last_decrease < self._decrease_window:
            return
        self._last_decrease = now
        self._decreases += 1
        if self._rate is None:
            new = self._measured_rate(now) * self._decrease_factor
            self._recent.clear()
            # Just throttled: start with an empty bucket.
            self._tokens = 0.0
            self._refilled_at = now
        else:
            self._refill(now)
            new = self._rate * self._decrease_factor
        self._rate = self._clamp(new)

    def _grow(self, now: float) -> None:
        if self._rate is None:
            return
        if (
            self._can_unlimit
            and self._last_throttle is not None
            and now - self._last_throttle >= cast(float, self._recover_after)
        ):
            self._rate = None
            self._recent.clear()
            return
        if self._increase == 0 or (self._max_rate is not None and self._rate >= self._max_rate):
            return
        self._refill(now)
        self._rate = self._clamp(self._rate + self._increase)
        self._increases += 1

    def _pause(self, now: float, retry_after: float | None) -> None:
        if retry_after is None or not math.isfinite(retry_after) or retry_after <= 0:
            return
        until = now + min(retry_after, self._max_pause)
        if until > self._not_before:
            self._not_before = until
            # One request may go the moment the pause ends; the pace resumes from there.
            self._tokens = 1.0
            self._refilled_at = until
