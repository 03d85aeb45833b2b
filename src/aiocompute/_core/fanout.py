"""Bounded-concurrency fan-out.

:func:`fan_out` / :func:`fan_out_iter` run one async function over many items with at most
``concurrency`` calls in flight. A small pool of worker tasks pulls items from the input one
at a time, so 100k items never become 100k tasks (or a 100k-element list) at once. Every
item gets an :class:`Outcome`; errors are collected per item unless ``fail_fast``.

API-agnostic; anyio primitives only (the pacing of a client's requests is the rate
governor's job: :mod:`.governor`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import suppress
from types import TracebackType
from typing import Generic, NoReturn, TypeVar, cast

import anyio
import anyio.abc
from anyio.lowlevel import checkpoint_if_cancelled
from attrs import frozen

from .checks import count

if sys.version_info < (3, 11):
    # The backport is a declared dependency on 3.10; it may be absent where mypy runs.
    from exceptiongroup import (  # type: ignore[import-not-found, unused-ignore]
        BaseExceptionGroup,
        ExceptionGroup,
    )

__all__ = [
    "FanOutIterator",
    "FanOutResult",
    "Outcome",
    "fan_out",
    "fan_out_iter",
]

T = TypeVar("T")
R = TypeVar("R")

#: Longest time spent closing an async-generator input that fan-out stopped consuming early,
#: and spent joining the workers of an abandoned :func:`fan_out_iter`.
_CLEANUP_TIMEOUT = 5.0
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
        return sum(1 for o in self.outcomes if o.error is None)

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
    return count(concurrency, "fan_out: concurrency", minimum=1)


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
        deliver: Callable[[Outcome[T, R]], Awaitable[None]],
    ) -> None:
        self._fn = fn
        self._sync: Iterator[T] | None = None
        self._async: AsyncIterator[T] | None = None
        if isinstance(items, AsyncIterable):
            self._async = items.__aiter__()
        else:
            self._sync = iter(items)
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

    async def _pull(self) -> tuple[int, T] | None:
        """The next item and its index, or None when no item is left to start."""
        if self._sync is not None:
            return self._pull_sync(self._sync)
        assert self._async is not None
        return await self._pull_async(self._async)

    def _pull_sync(self, source: Iterator[T]) -> tuple[int, T] | None:
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
        return self._numbered(item)

    async def _pull_async(self, source: AsyncIterator[T]) -> tuple[int, T] | None:
        # Two workers must not advance an async iterator (an async generator) at once.
        async with self._pull_lock:
            if self._exhausted or self._stopping:
                return None
            try:
                item = await source.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return None
            except Exception as exc:
                self._source_failed(exc)
                return None
            return self._numbered(item)

    def _numbered(self, item: T) -> tuple[int, T]:
        index = self._next_index
        self._next_index += 1
        return index, item

    def _source_failed(self, exc: Exception) -> None:
        """The input itself raised: it stops the run, and is raised as is afterwards."""
        self._exhausted = True
        self.source_error = exc
        self._stop()

    async def _worker(self) -> None:
        while True:
            # A function that never awaits must still let a cancel stop the loop.
            await checkpoint_if_cancelled()
            got = await self._pull()
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
                outcome: Outcome[T, R] = Outcome(item, index, error=exc)
            else:
                outcome = Outcome(item, index, value)
            if outcome.error is not None and self._fail_fast:
                self.failures.append(outcome)
                self._stop()
                return
            await self._deliver(outcome)

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

    async def collect(outcome: Outcome[T, R]) -> None:
        outcomes.append(outcome)

    engine = _Engine(fn, items, concurrency, fail_fast, collect)
    await engine.run()
    engine.raise_failures()
    if ordered:
        outcomes.sort(key=lambda o: o.index)
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
