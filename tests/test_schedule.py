"""The waiter engine's scheduling decisions (aiocompute._core.schedule), as plain data:
no event loop, no I/O, time given as numbers."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute._core.schedule import Schedule
from aiocompute._core.wait_types import PollCadence

EXACT = PollCadence(initial=0.1, max=1.6, factor=2.0, jitter=0.0, fast=0.05, min_gap=0.01)


def make(*, top_up: bool = True, max_batch: int | None = None, **kw: object) -> Schedule:
    cadence = PollCadence(**kw) if kw else EXACT  # type: ignore[arg-type]
    return Schedule(
        cadence, fast_states={"starting"}, max_batch=max_batch, top_up=top_up, rng=random.Random(1)
    )


def test_nothing_tracked_means_no_tick() -> None:
    s = make()
    assert s.next_tick() == math.inf
    assert s.plan(100.0) is None


def test_a_new_id_is_due_at_once_and_read_in_one_batch() -> None:
    s = make()
    s.add("a", 5.0)
    s.add("b", 5.0)
    assert s.next_tick() == 5.0
    plan = s.plan(5.0)
    assert plan is not None
    assert plan.batches == [["a", "b"]]
    # In flight: nothing is due until the reads come back.
    assert s.next_tick() == math.inf
    assert s.plan(5.0) is None


def test_backoff_grows_to_the_cap_and_starts_over_on_a_change() -> None:
    s = make(top_up=False)
    s.add("a", 0.0)
    now, intervals = 0.0, []
    for state in ["pending"] * 6 + ["running"]:
        plan = s.plan(now)
        assert plan is not None
        s.read(plan, "a", state)
        s.finish(plan, now)
        nxt = s.next_tick()
        intervals.append(round(nxt - now, 6))
        now = nxt
    assert intervals == [0.1, 0.2, 0.4, 0.8, 1.6, 1.6, 0.1]


def test_fast_states_are_read_every_fast_seconds() -> None:
    s = make(top_up=False)
    s.add("a", 0.0)
    for now in (0.0, 0.05, 0.1):
        plan = s.plan(now)
        assert plan is not None
        s.read(plan, "a", "starting")
        s.finish(plan, now)
        assert s.next_tick() == pytest.approx(now + 0.05)


def test_min_gap_and_retry_after_hold_the_next_tick() -> None:
    s = make(top_up=False)
    s.add("a", 0.0)
    plan = s.plan(0.0)
    assert plan is not None
    s.missed(plan, "a")  # due again at once (0.0 + initial), but...
    s.finish(plan, 0.095)  # ...the tick ended late: min_gap counts from its end
    assert s.next_tick() == pytest.approx(0.105)
    s.hold(3.0)
    assert s.next_tick() == 3.0


def test_per_id_reads_take_only_the_due_ids_soonest_first() -> None:
    s = make(top_up=False, max_batch=2)
    for i, one in enumerate("abcde"):
        s.add(one, float(i))
    plan = s.plan(2.5)
    assert plan is not None
    assert plan.batches == [["a", "b"], ["c"]]
    s.finish(plan, 2.5)  # unsettled ids are due at the tick's end
    assert s.next_tick() == pytest.approx(2.51)  # (min_gap after the tick)


def test_shared_reads_fill_the_last_batch_with_the_ids_due_next() -> None:
    s = make(top_up=True, max_batch=4)
    for i, one in enumerate("abcdefg"):
        s.add(one, float(i))
    plan = s.plan(0.0)  # only "a" is due; "b", "c", "d" ride along
    assert plan is not None
    assert plan.batches == [["a", "b", "c", "d"]]
    s2 = make(top_up=True)  # no max_batch: everybody rides along
    for one in "abc":
        s2.add(one, 1.0)
    s2.add("z", 9.0)
    plan2 = s2.plan(1.0)
    assert plan2 is not None
    assert plan2.batches == [["a", "b", "c", "z"]]


def test_the_cap_shrinks_with_the_number_of_shared_ids() -> None:
    s = make(top_up=True)
    for i in range(64):
        s.add(f"s{i}", 0.0)
    assert s.cap() == pytest.approx(1.6 * math.sqrt(1 / 64))
    assert make(top_up=False).cap() == 1.6


def test_a_change_anywhere_brings_every_shared_id_back_to_initial() -> None:
    s = make(top_up=True)
    s.add("a", 0.0)
    s.add("b", 0.0)
    now = 0.0
    for _ in range(3):  # both back off while nothing changes
        plan = s.plan(now)
        assert plan is not None
        s.read(plan, "a", "pending")
        s.read(plan, "b", "pending")
        s.finish(plan, now)
        now = s.next_tick()
    plan = s.plan(now)
    assert plan is not None
    s.read(plan, "a", "running")  # "a" moved...
    s.read(plan, "b", "pending")
    s.finish(plan, now)
    assert s.next_tick() == pytest.approx(now + 0.1)  # ...so "b" is read soon too


def test_a_failed_read_backs_off_from_the_end_of_the_tick() -> None:
    s = make(top_up=True)
    s.add("a", 0.0)
    plan = s.plan(0.0)
    assert plan is not None
    s.failed(plan, "a", 0.5)
    s.finish(plan, 0.5)
    assert s.next_tick() == pytest.approx(0.5 + 0.2)


def test_removed_ids_are_never_planned_and_stale_items_are_dropped() -> None:
    s = make(top_up=False)
    for i in range(200):
        s.add(f"s{i}", 0.0)
        s.add(f"s{i}", 0.0)  # a second waiter: due again, one read
    for i in range(199):
        s.remove(f"s{i}")
    plan = s.plan(0.0)
    assert plan is not None
    assert plan.batches == [["s199"]]
    s.finish(plan, 0.0)
    assert len(s._heap) <= 2 * len(s) + 64  # compacted


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "tick"]),
            st.integers(0, 7),
            st.sampled_from(["pending", "starting", "running", "gone", "error"]),
        ),
        max_size=60,
    ),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 3)),
)
def test_every_tracked_id_stays_scheduled(
    steps: list[tuple[str, int, str]], top_up: bool, max_batch: int | None
) -> None:
    """Whatever happens, each tracked id is read again some time (never lost), no tick
    reads an id twice, and no tick reads an id nobody tracks."""
    s = make(top_up=top_up, max_batch=max_batch)
    tracked: set[str] = set()
    now = 0.0
    for op, n, outcome in steps:
        one = f"s{n}"
        if op == "add":
            s.add(one, now)
            tracked.add(one)
        elif op == "remove":
            s.remove(one)
            tracked.discard(one)
        else:
            now = max(now, s.next_tick()) if tracked else now + 1
            plan = s.plan(now)
            if plan is None:
                assert not tracked
                continue
            ids = [i for batch in plan.batches for i in batch]
            assert len(ids) == len(set(ids))
            assert set(ids) <= tracked
            for i in ids[:-1]:  # the last one is cut short: finish() reschedules it
                if outcome == "gone":
                    s.missed(plan, i)
                elif outcome == "error":
                    s.failed(plan, i, now)
                else:
                    s.read(plan, i, outcome)
            s.finish(plan, now)
    assert len(s) == len(tracked)
    if tracked:
        assert s.next_tick() < math.inf
        seen: set[str] = set()
        for _ in range(1000):  # backoff is capped, so every id comes up well before this
            if seen == tracked:
                break
            now = max(now, s.next_tick())
            plan = s.plan(now)
            assert plan is not None
            for batch in plan.batches:
                seen.update(batch)
                for i in batch:
                    s.read(plan, i, "pending")
            s.finish(plan, now)
        assert seen == tracked
