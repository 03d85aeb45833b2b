"""Tests for aiocompute._core.fanout: fan_out and fan_out_iter."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute._core.fanout import FanOutResult, Outcome, fan_out, fan_out_iter

pytestmark = pytest.mark.virtual_time

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup  # type: ignore[import-not-found, unused-ignore]


class Boom(Exception):
    """A per-item failure."""


class Fatal(BaseException):
    """A BaseException that must never be collected as an item error."""


class InFlight:
    """Counts calls in flight, the peak, starts and cancellations."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.started: list[Any] = []
        self.cancelled: list[Any] = []
        self.finished: list[Any] = []

    async def run(self, item: Any, delay: float = 0.0) -> Any:
        self.started.append(item)
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if delay:
                await anyio.sleep(delay)
            else:
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(item)
            raise
        finally:
            self.now -= 1
        self.finished.append(item)
        return item


# --------------------------------------------------------------------------------------------
# fan_out: results and order


async def test_input_order_is_kept_with_random_delays() -> None:
    rng = random.Random(7)
    delays = {i: rng.uniform(0, 0.01) for i in range(60)}

    async def work(i: int) -> int:
        await anyio.sleep(delays[i])
        return i * 2

    with anyio.fail_after(5):
        result = await fan_out(work, range(60), concurrency=16)
    assert [o.index for o in result.outcomes] == list(range(60))
    assert [o.item for o in result] == list(range(60))
    assert result.values() == [i * 2 for i in range(60)]
    assert len(result) == 60
    assert result.succeeded == 60
    assert result.failed == 0
    assert result.errors == []


async def test_completion_order_when_unordered() -> None:
    # Each item waits for its own event; the controller releases them in a chosen order.
    release_order = [3, 0, 4, 1, 2]
    events = {i: anyio.Event() for i in range(5)}
    finished = {i: anyio.Event() for i in range(5)}

    async def work(i: int) -> int:
        await events[i].wait()
        finished[i].set()
        return i

    async def controller() -> None:
        for i in release_order:
            events[i].set()
            await finished[i].wait()

    results: list[FanOutResult[int, int]] = []

    async def run() -> None:
        results.append(await fan_out(work, range(5), concurrency=5, ordered=False))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            tg.start_soon(controller)
    assert [o.item for o in results[0]] == release_order
    assert [o.index for o in results[0]] == release_order


async def test_concurrency_is_never_exceeded_and_fully_used() -> None:
    counter = InFlight()
    rng = random.Random(3)

    async def work(i: int) -> int:
        return int(await counter.run(i, rng.choice([0.0, 0.001, 0.002])))

    with anyio.fail_after(5):
        result = await fan_out(work, range(200), concurrency=7)
    assert counter.peak == 7
    assert result.values() == list(range(200))


async def test_small_input_does_not_need_a_full_pool() -> None:
    counter = InFlight()

    async def work(i: int) -> int:
        return int(await counter.run(i, 0.001))

    result = await fan_out(work, [1, 2, 3], concurrency=1000)
    assert result.values() == [1, 2, 3]
    assert counter.peak == 3


async def test_concurrency_one_runs_sequentially_in_order() -> None:
    counter = InFlight()

    async def work(i: int) -> int:
        return int(await counter.run(i, 0.0))

    result = await fan_out(work, range(20), concurrency=1, ordered=False)
    assert counter.peak == 1
    assert counter.finished == list(range(20))
    assert [o.item for o in result] == list(range(20))


async def test_empty_input() -> None:
    async def work(i: int) -> int:
        raise AssertionError("never called")

    result: FanOutResult[int, int] = await fan_out(work, [])
    assert len(result) == 0
    assert result.values() == []


# --------------------------------------------------------------------------------------------
# fan_out: errors


async def test_errors_are_collected_per_item() -> None:
    async def work(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        if i % 3 == 0:
            raise Boom(f"bad {i}")
        return i

    result = await fan_out(work, range(10), concurrency=4)
    assert result.failed == 4
    assert result.succeeded == 6
    assert [item for item, _ in result.errors] == [0, 3, 6, 9]
    assert all(isinstance(err, Boom) for _, err in result.errors)
    assert [str(err) for _, err in result.errors] == ["bad 0", "bad 3", "bad 6", "bad 9"]
    by_index = {o.index: o for o in result}
    assert by_index[1].ok
    assert by_index[1].unwrap() == 1
    assert not by_index[3].ok
    assert by_index[3].value is None
    with pytest.raises(Boom, match="bad 3"):
        by_index[3].unwrap()


async def test_values_raises_exception_group_with_every_error() -> None:
    errors: dict[int, Boom] = {}

    async def work(i: int) -> int:
        if i in (2, 5):
            errors[i] = Boom(str(i))
            raise errors[i]
        return i

    result = await fan_out(work, range(8))
    with pytest.raises(ExceptionGroup) as info:
        result.values()
    group = info.value
    assert list(group.exceptions) == [errors[2], errors[5]]
    assert "2 of 8 item(s) failed" in str(group)
    assert "index 2, 5" in str(group)


async def test_outcome_none_value_is_a_success() -> None:
    async def work(i: int) -> None:
        return None

    result: FanOutResult[int, None] = await fan_out(work, [1])
    assert result.outcomes == [Outcome(1, 0, None, None)]
    assert result.outcomes[0].ok
    assert result.outcomes[0].unwrap() is None


async def test_fail_fast_cancels_the_rest() -> None:
    counter = InFlight()
    original = Boom("item 3 failed")

    async def work(i: int) -> int:
        if i == 3:
            await anyio.sleep(0.01)
            raise original
        return int(await counter.run(i, 10))

    with anyio.fail_after(3), pytest.raises(ExceptionGroup) as info:
        await fan_out(work, range(1000), concurrency=5, fail_fast=True)
    assert list(info.value.exceptions) == [original]
    # Only the first pool's worth of items started; every other one in flight was cancelled.
    assert len(counter.started) <= 5
    assert sorted(counter.cancelled) == sorted(counter.started)
    assert counter.finished == []
    assert counter.now == 0


async def test_fail_fast_with_functions_that_never_await() -> None:
    started: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        if i == 10:
            raise Boom("ten")
        return i

    with pytest.raises(ExceptionGroup) as info:
        await fan_out(work, range(10_000), concurrency=3, fail_fast=True)
    assert [str(e) for e in info.value.exceptions] == ["ten"]
    assert max(started) == 10  # nothing after the failure started


async def test_fail_fast_without_errors_returns_normally() -> None:
    async def work(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        return -i

    result = await fan_out(work, range(5), fail_fast=True)
    assert result.values() == [0, -1, -2, -3, -4]


async def test_base_exceptions_propagate_as_themselves() -> None:
    counter = InFlight()

    async def work(i: int) -> int:
        if i == 2:
            await anyio.sleep(0.005)
            raise Fatal("stop everything")
        return int(await counter.run(i, 10))

    with anyio.fail_after(3), pytest.raises(Fatal, match="stop everything"):
        await fan_out(work, range(50), concurrency=4)
    assert counter.now == 0
    assert sorted(counter.cancelled) == sorted(counter.started)


async def test_error_from_the_input_itself_is_raised_as_is() -> None:
    counter = InFlight()

    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise LookupError("the input broke")

    async def work(i: int) -> int:
        return int(await counter.run(i, 10))

    with anyio.fail_after(3), pytest.raises(LookupError, match="the input broke"):
        await fan_out(work, items(), concurrency=4)
    assert sorted(counter.cancelled) == [1, 2]


async def test_error_from_an_async_input_is_raised_as_is() -> None:
    async def items() -> AsyncIterator[int]:
        yield 1
        await anyio.lowlevel.checkpoint()
        raise LookupError("async input broke")

    async def work(i: int) -> int:
        await anyio.sleep(0.001)
        return i

    with anyio.fail_after(3), pytest.raises(LookupError, match="async input broke"):
        await fan_out(work, items(), concurrency=2)


# --------------------------------------------------------------------------------------------
# fan_out: inputs, scale, cancellation, validation


async def test_async_iterable_input() -> None:
    async def items() -> AsyncIterator[int]:
        for i in range(30):
            await anyio.lowlevel.checkpoint()
            yield i

    counter = InFlight()

    async def work(i: int) -> int:
        return int(await counter.run(i, 0.001)) + 100

    result = await fan_out(work, items(), concurrency=6)
    assert result.values() == [i + 100 for i in range(30)]
    assert counter.peak <= 6


async def test_abandoned_async_generator_input_is_closed() -> None:
    closed = anyio.Event()
    produced: list[int] = []

    async def items() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    async def work(i: int) -> int:
        await anyio.sleep(0.001)
        if i == 4:
            raise Boom("four")
        return i

    with pytest.raises(ExceptionGroup):
        await fan_out(work, items(), concurrency=2, fail_fast=True)
    assert closed.is_set()
    assert len(produced) < 20


async def test_ten_thousand_items_with_bounded_tasks_and_lazy_input() -> None:
    baseline = len(asyncio.all_tasks())
    pulled = 0
    completed = 0
    peak_pending = 0
    peak_tasks = 0
    concurrency = 50

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    async def work(i: int) -> int:
        nonlocal completed, peak_pending, peak_tasks
        peak_pending = max(peak_pending, pulled - completed)
        if i % 97 == 0:
            peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
        await anyio.lowlevel.checkpoint()
        completed += 1
        return i + 1

    with anyio.fail_after(20):
        result = await fan_out(work, items(), concurrency=concurrency)
    assert len(result) == 10_000
    assert result.succeeded == 10_000
    assert result.outcomes[-1].value == 10_000
    # The input is read lazily: never more than one pool's worth taken but unfinished.
    assert peak_pending <= concurrency
    # A pool of workers, not one task per item.
    assert peak_tasks <= baseline + concurrency + 1
    assert len(asyncio.all_tasks()) == baseline


async def test_cancelling_the_call_cancels_everything() -> None:
    baseline = len(asyncio.all_tasks())
    counter = InFlight()

    async def work(i: int) -> int:
        return int(await counter.run(i, 30))

    with anyio.move_on_after(0.05) as scope:
        await fan_out(work, range(100), concurrency=8)
    assert scope.cancelled_caught
    assert len(counter.started) == 8
    assert sorted(counter.cancelled) == sorted(counter.started)
    assert counter.now == 0
    await anyio.lowlevel.checkpoint()
    assert len(asyncio.all_tasks()) == baseline


@pytest.mark.parametrize(
    ("bad", "error", "says"),
    [
        (0, ValueError, "must be >= 1"),
        (-1, ValueError, "must be >= 1"),
        (1.5, TypeError, "must be an int"),
        (True, TypeError, "must be an int"),
        ("4", TypeError, "must be an int"),
        (None, TypeError, "must be an int"),
    ],
)
async def test_concurrency_validation(bad: Any, error: type[Exception], says: str) -> None:
    async def work(i: int) -> int:
        return i

    with pytest.raises(error, match=f"concurrency {says}"):
        await fan_out(work, [1], concurrency=bad)
    # fan_out_iter checks at once, before any iteration.
    with pytest.raises(error, match=f"concurrency {says}"):
        fan_out_iter(work, [1], concurrency=bad)


async def test_fn_and_items_validation() -> None:
    async def work(i: int) -> int:
        return i

    with pytest.raises(TypeError, match="fn must be an async callable"):
        await fan_out(42, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="items must be an iterable"):
        await fan_out(work, 5)  # type: ignore[arg-type]


@given(
    spec=st.lists(st.tuples(st.integers(), st.booleans()), max_size=40),
    concurrency=st.integers(min_value=1, max_value=12),
    ordered=st.booleans(),
)
def test_outcomes_match_inputs_one_to_one(
    spec: list[tuple[int, bool]], concurrency: int, ordered: bool
) -> None:
    async def work(pair: tuple[int, bool]) -> int:
        await anyio.lowlevel.checkpoint()
        value, fails = pair
        if fails:
            raise Boom(str(value))
        return value * 3

    result = anyio.run(lambda: fan_out(work, spec, concurrency=concurrency, ordered=ordered))
    assert len(result) == len(spec)
    indexes = [o.index for o in result]
    assert sorted(indexes) == list(range(len(spec)))
    if ordered:
        assert indexes == list(range(len(spec)))
    for outcome in result:
        value, fails = spec[outcome.index]
        assert outcome.item == spec[outcome.index]
        assert outcome.ok is not fails
        if fails:
            assert str(outcome.error) == str(value)
        else:
            assert outcome.value == value * 3
    assert result.failed == sum(1 for _, f in spec if f)


# --------------------------------------------------------------------------------------------
# fan_out_iter


async def test_iter_yields_as_completed() -> None:
    events = {i: anyio.Event() for i in range(4)}
    seen: list[int] = []

    async def work(i: int) -> int:
        await events[i].wait()
        return i * 10

    with anyio.fail_after(5):
        outcomes = fan_out_iter(work, range(4), concurrency=4)
        events[2].set()
        async for outcome in outcomes:
            seen.append(outcome.item)
            assert outcome.value == outcome.item * 10
            # Release the next one only after the previous one came out.
            nxt = {2: 0, 0: 3, 3: 1}.get(outcome.item)
            if nxt is not None:
                events[nxt].set()
    assert seen == [2, 0, 3, 1]


async def test_iter_collects_errors_without_fail_fast() -> None:
    async def work(i: int) -> int:
        if i == 1:
            raise Boom("one")
        return i

    outcomes = [o async for o in fan_out_iter(work, range(3), concurrency=2)]
    assert sorted(o.index for o in outcomes) == [0, 1, 2]
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) == 1
    assert str(failed[0].error) == "one"


async def test_iter_early_exit_with_async_with_cancels_in_flight() -> None:
    baseline = len(asyncio.all_tasks())
    counter = InFlight()

    async def work(i: int) -> int:
        delay = 0.001 if i == 0 else 30
        return int(await counter.run(i, delay))

    with anyio.fail_after(3):
        async with fan_out_iter(work, range(100), concurrency=5) as outcomes:
            async for outcome in outcomes:
                assert outcome.item == 0
                break
    assert counter.now == 0
    # Item 0's worker may have taken one more item before the consumer broke off.
    assert 5 <= len(counter.started) <= 6
    assert sorted(counter.cancelled) == sorted(set(counter.started) - {0})
    await anyio.lowlevel.checkpoint()
    assert len(asyncio.all_tasks()) == baseline


async def test_iter_break_without_async_with_still_cleans_up() -> None:
    baseline = len(asyncio.all_tasks())
    counter = InFlight()

    async def work(i: int) -> int:
        return int(await counter.run(i, 0.001 if i == 0 else 30))

    # The enclosing cancel scope must exit cleanly although the iterator was abandoned.
    with anyio.fail_after(3):
        async for outcome in fan_out_iter(work, range(100), concurrency=4):
            assert outcome.item == 0
            break
        # Cleanup happens in the finaliser's own task: poll for it (there is nothing to wait on).
        while counter.now or len(asyncio.all_tasks()) > baseline:  # noqa: ASYNC110
            await anyio.sleep(0.001)
    assert sorted(counter.cancelled) == sorted(set(counter.started) - {0})


async def test_a_function_that_never_awaits_still_stops_on_cancel() -> None:
    calls: list[int] = []

    with anyio.CancelScope() as scope:

        async def instant(i: int) -> int:
            calls.append(i)  # never suspends: only the worker's own checkpoints see a cancel
            if i == 100:
                scope.cancel()
            return i

        await fan_out(instant, range(1_000), concurrency=1)
    assert scope.cancelled_caught
    assert 100 < len(calls) <= 101 + 16


async def test_iter_consumer_cancelled_cancels_workers() -> None:
    baseline = len(asyncio.all_tasks())
    counter = InFlight()

    async def work(i: int) -> int:
        return int(await counter.run(i, 30))

    with anyio.move_on_after(0.05) as scope:
        async for _ in fan_out_iter(work, range(100), concurrency=6):
            raise AssertionError("nothing completes")
    assert scope.cancelled_caught
    assert len(counter.started) == 6
    assert sorted(counter.cancelled) == sorted(counter.started)
    assert counter.now == 0
    assert len(asyncio.all_tasks()) == baseline


async def test_iter_async_input_and_nothing_starts_before_iteration() -> None:
    produced: list[int] = []

    async def items() -> AsyncIterator[int]:
        for i in range(10):
            produced.append(i)
            yield i

    async def work(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        return i

    outcomes = fan_out_iter(work, items(), concurrency=3)
    await anyio.sleep(0.01)
    assert produced == []
    async with outcomes:
        got = sorted([o.unwrap() async for o in outcomes])
    assert got == list(range(10))


async def test_iter_fail_fast_raises_group() -> None:
    counter = InFlight()
    original = Boom("seven")

    async def work(i: int) -> int:
        if i == 7:
            raise original
        return int(await counter.run(i, 0.0 if i < 7 else 30))

    seen: list[int] = []

    async def consume() -> None:
        async for outcome in fan_out_iter(work, range(100), concurrency=3, fail_fast=True):
            assert outcome.ok
            seen.append(outcome.item)

    with anyio.fail_after(3), pytest.raises(ExceptionGroup) as info:
        await consume()
    assert list(info.value.exceptions) == [original]
    assert set(seen) <= set(range(7))
    assert counter.now == 0


async def test_iter_base_exception_propagates_as_itself() -> None:
    async def work(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        raise Fatal("bye")

    with anyio.fail_after(3), pytest.raises(Fatal):
        async for _ in fan_out_iter(work, range(3), concurrency=2):
            pass


async def test_outcomes_are_genuine_frozen_outcomes() -> None:
    from attrs.exceptions import FrozenInstanceError

    async def work(i: int) -> int:
        if i == 1:
            raise ValueError("one")
        return i * 10

    result = await fan_out(work, range(3), concurrency=2)
    ok, failed = result.outcomes[0], result.outcomes[1]
    assert type(ok) is Outcome
    assert ok == Outcome(0, 0, 0, None)
    assert (failed.item, failed.index, failed.value, type(failed.error)) == (1, 1, None, ValueError)
    with pytest.raises(FrozenInstanceError):
        ok.value = 5  # type: ignore[misc]
