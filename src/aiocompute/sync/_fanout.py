"""The blocking twins of :func:`aiocompute.fan_out` and :func:`aiocompute.fan_out_iter`.

Sync code calls blocking functions (a sync client's methods), so the twins run them on a
pool of at most ``concurrency`` threads, with the same arguments and the same results
(:class:`~aiocompute.FanOutResult`, :class:`~aiocompute.Outcome`) as the async ones. A sync
client may be shared by threads: each call waits in its thread while the request runs on
the client's own loop thread. Written once by hand, like the waiting twins: there is one
fan-out, not one per client.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar, cast

from .._core.fanout import FanOutResult, Outcome, _check_concurrency, _describe_failures

if sys.version_info < (3, 11):
    # The backport is a declared dependency on 3.10; it may be absent where mypy runs.
    from exceptiongroup import ExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = ["fan_out", "fan_out_iter"]

T = TypeVar("T")
R = TypeVar("R")


def _check(fn: object, items: object) -> None:
    if not callable(fn):
        raise TypeError(f"fan_out: fn must be a callable, got {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            "fan_out: fn is an async function; aiocompute.sync.fan_out runs blocking calls "
            "(a sync client's methods): use aiocompute.fan_out for async ones"
        )
    if not isinstance(items, Iterable):
        raise TypeError(f"fan_out: items must be an iterable, got {type(items).__name__}")


def _run(
    fn: Callable[[T], R], items: Iterable[T], concurrency: int, fail_fast: bool
) -> Generator[Outcome[T, R], None, None]:
    source = iter(items)
    failures: list[Outcome[T, R]] = []
    running: dict[Future[R], tuple[int, T]] = {}
    next_index = 0
    exhausted = False
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="aiocompute-fan-out")
    try:
        while True:
            # Items are taken lazily, one per free thread: a generator of any length is fine.
            while not exhausted and not failures and len(running) < concurrency:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                running[pool.submit(fn, item)] = (next_index, item)
                next_index += 1
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f][0]):
                index, item = running.pop(future)
                error = future.exception()
                if error is not None and not isinstance(error, Exception):
                    raise error  # KeyboardInterrupt, SystemExit: never collected
                outcome: Outcome[T, R] = (
                    Outcome(item, index, error=error)
                    if error is not None
                    else Outcome(item, index, future.result())
                )
                if error is not None and fail_fast:
                    failures.append(outcome)  # no new item starts; those running finish
                    continue
                yield outcome
    finally:
        # Leaving early (or an error): items not started are dropped, running calls end.
        pool.shutdown(wait=True, cancel_futures=True)
    if failures:
        raise ExceptionGroup(
            _describe_failures(failures, None), [cast(Exception, o.error) for o in failures]
        )


def fan_out(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    concurrency: int = 32,
    fail_fast: bool = False,
    ordered: bool = True,
) -> FanOutResult[T, R]:
    """Call ``fn(item)`` for every item, at most ``concurrency`` at a time (in threads);
    the blocking twin of :func:`aiocompute.fan_out`, with the same result.

    ``result.values()`` gives every value (or raises an ``ExceptionGroup`` of the errors);
    iterating ``result`` gives each item's :class:`~aiocompute.Outcome`. With
    ``fail_fast=True`` the first error starts no new item, waits for the calls running
    (threads cannot be cancelled), and raises an ``ExceptionGroup``.
    """
    _check(fn, items)
    outcomes = list(_run(fn, items, _check_concurrency(concurrency), fail_fast))
    if ordered:
        outcomes.sort(key=lambda o: o.index)
    return FanOutResult(outcomes)


def fan_out_iter(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    concurrency: int = 32,
    fail_fast: bool = False,
) -> Iterator[Outcome[T, R]]:
    """Like :func:`fan_out`, but yield each :class:`~aiocompute.Outcome` as soon as its call
    completes; the blocking twin of :func:`aiocompute.fan_out_iter`. Nothing starts until
    the first ``next()``; closing the iterator early (``break`` then ``close()``, or the end
    of a ``with contextlib.closing(...)`` block) starts no new item and waits for those
    running."""
    _check(fn, items)
    return _run(fn, items, _check_concurrency(concurrency), fail_fast)
