"""Bounded-concurrency fan-out and a per-client AIMD rate governor.

Two independent tools live here:

* :func:`fan_out` / :func:`fan_out_iter` run one async function over many items with at most
  ``concurrency`` calls in flight. A small pool of worker tasks pulls items from the input
  one at a time, so 100k items never become 100k tasks (or a 100k-element list) at once.
  Every item gets an :class:`Outcome`; errors are collected per item unless ``fail_fast``.
* :class:`RateGovernor` paces the requests of one client (polls, queries and launches alike)
  and backs off when the server answers 429: additive increase, multiplicative decrease.

Both are API-agnostic and use anyio primitives only.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import asynccontextmanager, suppress
from operator import attrgetter
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar, cast

import anyio
import anyio.abc
from anyio.lowlevel import checkpoint_if_cancelled
from attrs import frozen

from .fastinit import maker_for

if sys.version_info < (3, 11):
    # The backport is a declared dependency on 3.10; it may be absent where mypy runs.
    from exceptiongroup import (  # type: ignore[import-not-found, unused-ignore]
        BaseExceptionGroup,
        ExceptionGroup,
    )

__all__ = [
    "FanOutIterator",
    "FanOutResult",
    "GovernorStats",
    "Outcome",
    "RateGovernor",
    "fan_out",
    "fan_out_iter",
]

T = TypeVar("T")
R = TypeVar("R")

#: Longest time spent closing an async-generator input that fan-out stopped consuming early,
#: and spent joining the workers of an abandoned :func:`fan_out_iter`.
_CLEANUP_TIMEOUT = 5.0
#: A worker asks whether it was cancelled once every this many items.
_CHECKPOINT_EVERY = 16
#: Float tolerance on the token bucket (a token short by less than this is a whole token).
_TOKEN_EPSILON = 1e-9
#: How many failing indexes an error message names before it says "...".
_MAX_NAMED_INDEXES = 10


# --------------------------------------------------------------------------------------------
# Results


@frozen
class Outcome(Generic[T, R]):
    """What happened to one input item of a fan-out.

    ``index`` is the item's position in the input; exactly one of ``value`` / ``error`` is
    meaningful: ``error`` is None when the call succeeded (``value`` may itself be None).
    """

    item: T
    index: int
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the call for this item returned instead of raising."""
        return self.error is None

    def unwrap(self) -> R:
        """Return the value, or raise the item's error."""
        if self.error is not None:
            raise self.error
        return cast(R, self.value)


def _describe_failures(failed: list[Outcome[T, R]], total: int | None) -> str:
    indexes = sorted(o.index for o in failed)
    named = ", ".join(str(i) for i in indexes[:_MAX_NAMED_INDEXES])
    if len(indexes) > _MAX_NAMED_INDEXES:
        named += ", ..."
    of = f" of {total}" if total is not None else ""
    return f"fan_out: {len(failed)}{of} item(s) failed (index {named})"


#: ``Outcome(item, index, value, error)``, without Outcome's per-attribute setattr calls:
#: one is made per item of every fan-out (see :mod:`.fastinit`).
_make_outcome: Callable[[Any, int, Any, Exception | None], Outcome[Any, Any]] = maker_for(Outcome)

# Key and field getters of Outcome, for sorting and counting in C.
_BY_INDEX = attrgetter("index")
_ERROR_OF = attrgetter("error")


@frozen
class FanOutResult(Generic[T, R]):
    """Every :class:`Outcome` of a :func:`fan_out` call.

    ``outcomes`` is in input order or completion order, as the call asked. Iterating the result
    iterates the outcomes; ``len()`` is the number of items.
    """

    outcomes: list[Outcome[T, R]]

    @property
    def errors(self) -> list[tuple[T, Exception]]:
        """``(item, error)`` for every failed item, in the order of :attr:`outcomes`."""
        return [(o.item, o.error) for o in self.outcomes if o.error is not None]

    @property
    def succeeded(self) -> int:
        """How many items succeeded."""
        # Counted in C: a count of this kind is read after every run.
        return list(map(_ERROR_OF, self.outcomes)).count(None)

    @property
    def failed(self) -> int:
        """How many items failed."""
        return len(self.outcomes) - self.succeeded

    def values(self) -> list[R]:
        """The values of all items, in the order of :attr:`outcomes`.

        Raises an ``ExceptionGroup`` holding every item's error if any item failed; the
        message names the failing indexes.
        """
        failed = [o for o in self.outcomes if o.error is not None]
        if failed:
            raise ExceptionGroup(
                _describe_failures(failed, len(self.outcomes)),
                [cast(Exception, o.error) for o in failed],
            )
        return [cast(R, o.value) for o in self.outcomes]

    def __iter__(self) -> Iterator[Outcome[T, R]]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)


# --------------------------------------------------------------------------------------------
# The engine shared by fan_out and fan_out_iter


def _check_concurrency(concurrency: object) -> int:
    # bool is an int subclass; concurrency=True is surely a mistake.
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise ValueError(
            f"fan_out: concurrency must be an int >= 1, got {type(concurrency).__name__} "
            f"{concurrency!r}"
        )
    if concurrency < 1:
        raise ValueError(f"fan_out: concurrency must be an int >= 1, got {concurrency}")
    return concurrency


def _check_fn_and_items(fn: object, items: object) -> None:
    if not callable(fn):
        raise TypeError(f"fan_out: fn must be an async callable, got {type(fn).__name__}")
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise TypeError(
            f"fan_out: items must be an iterable or async iterable, got {type(items).__name__}"
        )


def _raise_bare(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise what escaped the workers' task group without the group wrapper.

    Workers catch every ``Exception`` of the user's function, so what escapes is a
    ``BaseException`` such as KeyboardInterrupt or SystemExit: it must propagate as itself.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in leaves:
        if not isinstance(leaf, (Exception, cancelled)):
            raise leaf from None
    raise group


class _Engine(Generic[T, R]):
    """A pool of at most ``concurrency`` workers pulling items from one input."""

    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        concurrency: int,
        fail_fast: bool,
        deliver: Callable[[Outcome[T, R]], Awaitable[None] | None],
    ) -> None:
        self._fn = fn
        self._sync: Iterator[T] | None = None
        self._async: AsyncIterator[T] | None = None
        if isinstance(items, AsyncIterable):
            self._async = items.__aiter__()
        else:
            self._sync = iter(items)
        # Async iterators (async generators in particular) must not be advanced concurrently.
        self._pull_lock = anyio.Lock()
        self._concurrency = concurrency
        self._fail_fast = fail_fast
        self._deliver = deliver
        self._next_index = 0
        self._workers = 0
        self._exhausted = False
        self._stopping = False
        self._tg: anyio.abc.TaskGroup | None = None
        #: Errors that stopped the run under fail_fast, in the order they were seen.
        self.failures: list[Outcome[T, R]] = []
        #: An error raised by the input iterable itself (not by ``fn``).
        self.source_error: Exception | None = None

    async def run(self) -> None:
        """Run until the input is exhausted or the run stops; raise only BaseExceptions."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._workers = 1
                tg.start_soon(self._worker)
        except BaseExceptionGroup as group:
            _raise_bare(group)
        finally:
            self._tg = None
            await self._close_source()

    def raise_failures(self) -> None:
        """After :meth:`run`: raise the input's own error, or the fail-fast group."""
        if self.source_error is not None:
            raise self.source_error
        if self.failures:
            raise ExceptionGroup(
                _describe_failures(self.failures, None),
                [cast(Exception, o.error) for o in self.failures],
            )

    def _stop(self) -> None:
        self._stopping = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _source_failed(self, exc: Exception) -> None:
        """The input itself raised: it stops the run, and is raised as is afterwards."""
        self._exhausted = True
        self.source_error = exc
        self._stop()

    def _pull_sync(self, source: Iterator[T]) -> tuple[int, T] | None:
        # A plain method: a sync input needs no coroutine per item.
        if self._exhausted or self._stopping:
            return None
        try:
            item = next(source)
        except StopIteration:
            self._exhausted = True
            return None
        except Exception as exc:
            self._source_failed(exc)
            return None
        index = self._next_index
        self._next_index += 1
        return index, item

    async def _pull_async(self) -> tuple[int, T] | None:
        assert self._async is not None
        async with self._pull_lock:
            if self._exhausted or self._stopping:
                return None
            try:
                item = await self._async.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return None
            except Exception as exc:
                self._source_failed(exc)
                return None
        index = self._next_index
        self._next_index += 1
        return index, item

    async def _worker(self) -> None:
        unchecked = _CHECKPOINT_EVERY - 1  # the first item is checked
        sync = self._sync
        deliver = self._deliver
        while True:
            # A function that never awaits must still let a cancel stop the loop; asking
            # anyio costs a backend lookup, so only every few items (one that awaits is
            # cancelled at its own await anyway).
            unchecked += 1
            if unchecked >= _CHECKPOINT_EVERY:
                unchecked = 0
                await checkpoint_if_cancelled()
            got = self._pull_sync(sync) if sync is not None else await self._pull_async()
            if got is None:
                return
            index, item = got
            # Grow the pool one worker at a time, only while there is work to give it.
            if self._workers < self._concurrency and not self._exhausted:
                assert self._tg is not None
                self._workers += 1
                self._tg.start_soon(self._worker)
            try:
                value = await self._fn(item)
            except Exception as exc:
                outcome: Outcome[T, R] = _make_outcome(item, index, None, exc)
            else:
                outcome = _make_outcome(item, index, value, None)
            if outcome.error is not None and self._fail_fast:
                self.failures.append(outcome)
                self._stop()
                return
            # fan_out's collector is a plain list append; fan_out_iter's is a channel send.
            delivered = deliver(outcome)
            if delivered is not None:
                await delivered

    async def _close_source(self) -> None:
        # An abandoned async generator would otherwise be finalised later, in another task.
        if self._async is None or self._exhausted:
            return
        aclose = getattr(self._async, "aclose", None)
        if aclose is None:
            return
        # Its own cleanup error is dropped: the error that stopped the run matters more.
        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True), suppress(Exception):
            await aclose()


# --------------------------------------------------------------------------------------------
# Public fan-out API


async def fan_out(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    concurrency: int = 32,
    fail_fast: bool = False,
    ordered: bool = True,
) -> FanOutResult[T, R]:
    """Call ``await fn(item)`` for every item with at most ``concurrency`` calls in flight.

    ``items`` may be any iterable or async iterable; it is consumed lazily, one item each time
    a worker is free, so generators of any length are fine. Outcomes come back in input order
    (``ordered=True``) or in completion order.

    By default an item's ``Exception`` is recorded in its :class:`Outcome` and the others go
    on. With ``fail_fast=True`` the first error cancels every call in flight, starts no new
    item, and ``fan_out`` raises an ``ExceptionGroup`` of the error(s) seen.

    An error raised by ``items`` itself stops the run and is raised as is. BaseExceptions
    (KeyboardInterrupt, SystemExit, cancellation) are never collected: they propagate as
    themselves after all calls in flight have been cancelled. Cancelling ``fan_out`` cancels
    everything it started. An async-generator input that was not exhausted is closed.
    """
    _check_fn_and_items(fn, items)
    concurrency = _check_concurrency(concurrency)
    outcomes: list[Outcome[T, R]] = []
    engine = _Engine(fn, items, concurrency, fail_fast, outcomes.append)
    await engine.run()
    engine.raise_failures()
    if ordered:
        outcomes.sort(key=_BY_INDEX)
    return FanOutResult(outcomes)


class FanOutIterator(AsyncIterator[Outcome[T, R]], Generic[T, R]):
    """The async iterator returned by :func:`fan_out_iter`; also an async context manager.

    Iterating it to the end needs nothing else. A consumer that stops early (``break``, an
    exception in the loop body) should use ``async with fan_out_iter(...) as outcomes:`` (or
    call :meth:`aclose`): the calls still in flight are then cancelled and joined before the
    block exits. Without it they are cancelled when the iterator is garbage-collected.
    """

    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        concurrency: int,
        fail_fast: bool,
    ) -> None:
        self._gen = _iterate(fn, items, concurrency, fail_fast)

    def __aiter__(self) -> FanOutIterator[T, R]:
        return self

    async def __anext__(self) -> Outcome[T, R]:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Cancel the calls in flight and wait for them to finish."""
        await self._gen.aclose()

    async def __aenter__(self) -> FanOutIterator[T, R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _iterate(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    concurrency: int,
    fail_fast: bool,
) -> AsyncGenerator[Outcome[T, R], None]:
    # The buffer lets every worker hand over one finished outcome without waiting; beyond
    # that, a slow consumer holds the workers back instead of piling up results.
    send, recv = anyio.create_memory_object_stream[Outcome[T, R]](concurrency)
    engine = _Engine(fn, items, concurrency, fail_fast, send.send)

    async def pump() -> None:
        async with send:
            await engine.run()

    # The workers live in a task of their own, not in a task group entered here: a cancel
    # scope must never stay open across a ``yield``, or a consumer that breaks out of its loop
    # would leave it dangling in its own task. The task is cancelled and joined in ``finally``,
    # which runs on aclose(), on cancellation, and when an abandoned iterator is finalised.
    pump_task = asyncio.get_running_loop().create_task(pump())
    try:
        async with recv:
            async for outcome in recv:
                yield outcome
        await pump_task  # re-raises a BaseException that stopped the workers
    finally:
        if not pump_task.done():
            pump_task.cancel()
            with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                await asyncio.wait({pump_task})
    engine.raise_failures()


def fan_out_iter(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    concurrency: int = 32,
    fail_fast: bool = False,
) -> FanOutIterator[T, R]:
    """Like :func:`fan_out`, but yield each :class:`Outcome` as soon as its call completes.

    Nothing starts until the first ``__anext__``. With ``fail_fast=True`` failed outcomes are
    not yielded: the first failure cancels the rest and the iteration raises an
    ``ExceptionGroup`` of the error(s) (outcomes that completed before it are yielded first).
    Arguments are checked at once. See :class:`FanOutIterator` for stopping early.

    The workers run in a background asyncio task owned by the iterator (the package runs on
    asyncio, through aiohttp); cancelling the consumer cancels them.
    """
    _check_fn_and_items(fn, items)
    return FanOutIterator(fn, items, _check_concurrency(concurrency), fail_fast)


# --------------------------------------------------------------------------------------------
# Rate governor


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"RateGovernor: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"RateGovernor: {name} must be a positive finite number, got {value!r}")
    return float(value)


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

    The transport uses it like this, around each HTTP attempt::

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

    def try_acquire(self) -> bool:
        """Let one more request start now if nothing asks it to wait (no pace in force, no
        Retry-After pause, nobody waiting in :meth:`acquire`); False means: await
        :meth:`acquire` instead."""
        now = self._clock()
        if self._rate is None and now >= self._not_before and not self._lock.locked():
            # _take's unlimited case, written out: this runs before every request.
            self._acquired += 1
            self._recent.append(now)
            return True
        return False

    async def acquire(self) -> None:
        """Wait until one more request may start (pacing and Retry-After pauses)."""
        if self.try_acquire():
            return
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._take(now)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a concurrency slot (if ``max_concurrency``) and a pacing token for a request.

        The slot is taken first, so the paced start is close to the real send time; it is
        released when the block exits, whatever happens inside it.
        """
        if self._slots is None:
            await self.acquire()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1
            return
        async with self._slots:
            await self.acquire()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

    def feedback(self, status: int | None, retry_after: float | None = None) -> None:
        """Report how an attempt ended: its HTTP ``status`` (None on a transport error) and
        the server's Retry-After in seconds, if any."""
        if status is not None and status < 500 and status != 429:
            # The usual answer: only a pace in force has anything to learn from it.
            if self._rate is not None:
                self._grow(self._clock())
            return
        now = self._clock()
        if status == 429:
            self._throttled += 1
            self._last_throttle = now
            self._cut(now)
            self._pause(now, retry_after)
        elif status == 503:
            self._pause(now, retry_after)

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
