"""Tests of the waiter engine (aiocompute._core.polling) against an in-memory fake server.

The fake server plays scripted timelines ("launching" at 0 s, "running" at 0.2 s...) on a
virtual clock: every async test runs (the module's ``virtual_time`` mark) in an event loop
whose time jumps straight to the next timer whenever nothing is ready to run. Sleeps cost
no real time and the order of events does not depend on how busy the machine is, so the
tests can check exact intervals, read counts and elapsed times.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from attrs import frozen
from hypothesis import given
from hypothesis import strategies as st

from aiocompute._core.polling import PerIdFetcher, Poller, per_id_fetcher
from aiocompute._core.states import StateTable
from aiocompute._core.wait_types import (
    PollCadence,
    PollEvent,
    TransitionEvent,
    WaitResult,
    WaitToken,
)
from aiocompute._exceptions import (
    AuthenticationError,
    ClientClosedError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    UnreachableState,
    WaitTimeout,
)
from helpers import VirtualTimeLoop

pytestmark = pytest.mark.virtual_time

# -- example tables, mirroring DESIGN.md's "State machines" (the real ones live in the APIs) --

WB_SESSION = StateTable(
    "workbench session",
    transient={
        "launching",
        "resuming",
        "pending",
        "starting",
        "suspending",
        "shutting_down",
        "quitting",
        "destroy_pending",
    },
    terminal={"finished", "failed", "killed", "canceled", "ended"},
    resumable={"suspended", "saved"},
    stable={"running"},
    fast={"starting"},
)

WB_JOB = StateTable(
    "workbench job",
    transient={"Pending", "Running", "Suspended"},
    terminal={"Finished", "Failed", "Killed", "Canceled"},
)

ET_BATCH = StateTable(
    "et engine batch",
    transient={"submitted", "pending", "runnable", "starting", "running"},
    terminal={"succeeded", "failed"},
    normalize=str.lower,
)

QISKIT_SESSION = StateTable(
    "qiskit session",
    transient={"open", "active", "inactive", "pending_inactive", "pending_closed"},
    terminal={"closed"},
)

# Small intervals keep the tests quick; jitter 0 makes intervals exact.
QUICK = PollCadence(initial=0.01, max=0.05, factor=1.5, jitter=0.0, fast=0.01, min_gap=0.005)


@frozen
class Res:
    """A fake resource as an API's model would be."""

    id: str
    state: str
    detail: str | None = None
    exit_code: int | None = None
    accepting: bool = True


class FakeServer:
    """Resources follow scripted timelines on the loop's virtual clock; fetch_many reads them
    like a batch endpoint (each read takes 1 ms of virtual time)."""

    def __init__(self) -> None:
        self.plans: dict[str, list[tuple[float, Res]]] = {}
        self.calls: list[tuple[float, list[str]]] = []
        self.faults: list[BaseException] = []
        self.concurrent = 0
        self.max_concurrent = 0

    def now(self) -> float:
        """The loop's virtual clock: seconds since the test started."""
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop), "async tests here run on virtual time"
        return loop.time()

    def plan(self, id: str, *steps: tuple[float, str] | tuple[float, str, dict[str, Any]]) -> None:
        """Script ``id``: ``(at_seconds, state[, extra fields])`` steps, times from now."""
        base = self.now()
        self.plans[id] = [
            (base + step[0], Res(id, step[1], **(step[2] if len(step) > 2 else {})))  # type: ignore[misc]
            for step in steps
        ]

    def read(self, id: str) -> Res | None:
        plan = self.plans.get(id)
        if plan is None:
            return None
        now = self.now()
        current = [res for at, res in plan if at <= now]
        return current[-1] if current else None

    async def fetch_many(self, ids: Sequence[str]) -> Mapping[str, Res]:
        self.calls.append((self.now(), list(ids)))
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await anyio.sleep(0.001)
            if self.faults:
                raise self.faults.pop(0)
            found = {one: self.read(one) for one in ids}
            return {one: res for one, res in found.items() if res is not None}
        finally:
            self.concurrent -= 1

    async def fetch_one(self, id: str) -> Res:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await anyio.sleep(0.005)
            res = self.read(id)
            if res is None:
                raise NotFoundError(f"session {id} not found", status=404)
            return res
        finally:
            self.concurrent -= 1


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def make_poller(server: FakeServer, table: StateTable = WB_SESSION, **kwargs: Any) -> Poller[Res]:
    kwargs.setdefault("cadence", QUICK)
    kwargs.setdefault("detail_of", lambda r: r.detail)
    return Poller(table, server.fetch_many, state_of=lambda r: r.state, **kwargs)


def assert_quiet(poller: Poller[Res]) -> None:
    """Nothing is left behind: no tracked ids, no driver, no stray tasks."""
    assert poller.watched_ids == frozenset()
    assert poller._loop._driver is None
    assert poller._loop._idle == {}
    assert len(poller._loop.schedule) == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def collect_all(events: Any) -> list[Any]:
    return [event async for event in events]


# ------------------------------------------------------------------------------ state tables


def test_derived_reaches_follow_the_table() -> None:
    t = WB_SESSION
    assert t.can_reach("launching", "running")
    assert t.can_reach("starting", "suspended")
    assert t.can_reach("running", "ended")
    assert not t.can_reach("failed", "running")
    assert t.can_reach("failed", "failed")
    # Resumable states come back only through an explicit resume, never by waiting.
    assert not t.can_reach("suspended", "running")
    assert t.is_settled("suspended")
    assert t.is_settled("killed")
    assert not t.is_settled("running")
    assert not t.is_settled("pending")
    assert t.is_terminal("ended")
    assert not t.is_terminal("suspended")
    # An unknown state may go anywhere; it is neither terminal nor settled.
    assert t.can_reach("brand_new_state", "running")
    assert not t.is_terminal("brand_new_state")
    assert not t.is_settled("brand_new_state")
    assert t.reaches["running"] == t.states


def test_explicit_reaches_override_and_normalize() -> None:
    t = StateTable(
        "qiskit session",
        transient={"open", "active", "inactive"},
        terminal={"closed"},
        reaches={"inactive": {"active", "closed"}},
    )
    assert not t.can_reach("inactive", "open")
    assert t.can_reach("inactive", "closed")
    assert t.can_reach("open", "inactive")
    assert ET_BATCH.can_reach("RUNNING", "Succeeded")
    assert ET_BATCH.is_terminal("FAILED")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transient": {"a"}, "terminal": {"a"}}, "both transient and terminal"),
        ({"transient": {"a"}, "terminal": {"b"}, "fast": {"c"}}, "fast states"),
        ({"transient": {"A"}, "terminal": {"b"}, "normalize": str.lower}, "not normalized"),
        ({"transient": {"a"}, "terminal": {"b"}, "reaches": {"b": {"a"}}}, "cannot reach"),
        ({"transient": {"a"}, "terminal": {"b"}, "reaches": {"x": {"a"}}}, "unknown state"),
        ({"transient": {"a"}, "terminal": {"b"}, "reaches": {"a": {"zz"}}}, "unknown states"),
    ],
)
def test_bad_tables_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StateTable("t", **kwargs)


def test_a_string_is_not_a_set_of_states() -> None:
    with pytest.raises(TypeError, match="string"):
        StateTable("t", transient="running", terminal={"x"})


_names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@st.composite
def tables(draw: st.DrawFn) -> tuple[StateTable, dict[str, set[str]]]:
    """A random table, and the explicit ``reaches`` entries it was given."""
    names = draw(st.lists(_names, min_size=1, max_size=12, unique=True))
    kinds = draw(st.lists(st.sampled_from("TXRS"), min_size=len(names), max_size=len(names)))
    groups: dict[str, set[str]] = {"T": set(), "X": set(), "R": set(), "S": set()}
    for name, kind in zip(names, kinds, strict=True):
        groups[kind].add(name)
    moving = sorted(groups["T"] | groups["S"])
    given: dict[str, set[str]] = {}
    if moving:
        for state in draw(st.lists(st.sampled_from(moving), unique=True)):
            given[state] = set(draw(st.lists(st.sampled_from(names))))
    table = StateTable(
        "random",
        transient=groups["T"],
        terminal=groups["X"],
        resumable=groups["R"],
        stable=groups["S"],
        fast=draw(st.sets(st.sampled_from(names))) if names else set(),
        reaches=given,
    )
    return table, given


@given(tables(), st.text(alphabet="xyz", min_size=4, max_size=5))
def test_can_reach_properties(drawn: tuple[StateTable, dict[str, set[str]]], unknown: str) -> None:
    table, given_reaches = drawn
    states = sorted(table.states)
    assert table.states == table.transient | table.terminal | table.resumable | table.stable
    for s in states:
        assert table.can_reach(s, s)
        for t in states:
            if s in table.terminal | table.resumable:
                # Terminal (and resumable) states never reach another state by waiting.
                assert table.can_reach(s, t) == (s == t)
            elif s in given_reaches:
                assert table.can_reach(s, t) == (s == t or t in given_reaches[s])
            else:
                # Derived: a moving state can still reach every known state.
                assert table.can_reach(s, t)
            # can_reach agrees with the complete map.
            assert table.can_reach(s, t) == (s == t or t in table.reaches[s])
        assert table.is_terminal(s) == (s in table.terminal)
        assert table.is_settled(s) == (table.reaches[s] <= {s})
        if s in table.terminal | table.resumable:
            assert table.is_settled(s)
    # Unknown states are treated as transient: they may reach anything, are never settled.
    assert all(table.can_reach(unknown, t) for t in states)
    assert not table.is_settled(unknown)
    assert not table.is_terminal(unknown)


def test_cadence_validation() -> None:
    with pytest.raises(ValueError, match="factor"):
        PollCadence(factor=0.5)
    with pytest.raises(ValueError, match="jitter"):
        PollCadence(jitter=1.0)
    with pytest.raises(ValueError, match="exceeds max"):
        PollCadence(initial=3.0, max=2.0)
    with pytest.raises(ValueError, match="finite number"):
        PollCadence(max=math.inf)
    with pytest.raises(TypeError, match="number"):
        PollCadence(initial="0.1")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ basic waits


async def test_wait_returns_the_resource_in_its_target_state(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.05, "starting"), (0.1, "running"))
    poller = make_poller(server)
    res = await poller.wait("s1", "running", timeout=5)
    assert res == Res("s1", "running")
    assert_quiet(poller)


async def test_history_transitions_and_attempts_in_order(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.04, "pending"), (0.08, "starting"), (0.12, "running"))
    poller = make_poller(server)
    transitions: list[TransitionEvent[Res]] = []
    polls: list[PollEvent[Res]] = []

    async def on_transition(event: TransitionEvent[Res]) -> None:  # async hooks are awaited
        await anyio.lowlevel.checkpoint()
        transitions.append(event)

    await poller.wait("s1", "running", timeout=5, on_transition=on_transition, on_poll=polls.append)
    assert [(e.old_state, e.new_state) for e in transitions] == [
        (None, "launching"),
        ("launching", "pending"),
        ("pending", "starting"),
        ("starting", "running"),
    ]
    assert [e.at for e in transitions] == sorted(e.at for e in transitions)
    assert [p.attempt for p in polls] == list(range(1, len(polls) + 1))
    assert polls[-1].state == "running"
    assert len(polls) >= 4


async def test_a_failing_hook_ends_the_wait_cleanly(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.05, "running"))
    poller = make_poller(server)

    def hook(event: TransitionEvent[Res]) -> None:
        if event.new_state == "running":
            raise RuntimeError("user hook broke")

    with pytest.raises(RuntimeError, match="user hook broke"):
        await poller.wait("s1", "running", timeout=5, on_transition=hook)
    assert_quiet(poller)


async def test_wait_timeout_carries_last_history_attempts_elapsed(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.03, "pending"))
    poller = make_poller(server)
    polls: list[PollEvent[Res]] = []
    start = anyio.current_time()
    with pytest.raises(WaitTimeout) as info:
        await poller.wait("s1", "running", timeout=0.25, on_poll=polls.append)
    err = info.value
    assert err.last == Res("s1", "pending")
    assert [s for s, _ in err.history] == ["launching", "pending"]
    assert start <= err.history[0][1] < err.history[1][1]
    assert err.attempts == len(polls) >= 4
    assert 0.25 <= err.elapsed <= 0.26  # ends at its deadline, not before nor much after
    assert "'s1'" in str(err)
    assert "'running'" in str(err)
    assert "'pending'" in str(err)
    assert_quiet(poller)


async def test_last_is_the_newest_read_even_without_a_state_change(server: FakeServer) -> None:
    # Reads that change nothing a wait decides on do not wake it, but still count as `last`.
    server.plan("s1", (0, "pending", {"detail": "queued"}), (0.05, "pending", {"detail": "pull"}))
    poller = make_poller(server)
    with pytest.raises(WaitTimeout) as info:
        await poller.wait("s1", "running", timeout=0.15)
    assert info.value.last == Res("s1", "pending", detail="pull")
    assert [s for s, _ in info.value.history] == ["pending"]
    assert info.value.attempts >= 3


async def test_unreachable_terminal_ends_at_once_with_detail(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.05, "failed", {"detail": "Unknown resource profile"}))
    poller = make_poller(server)
    start = anyio.current_time()
    with pytest.raises(UnreachableState) as info:
        await poller.wait("s1", "running", timeout=30)
    # At the first read after the move (intervals cap at 50 ms), not at the 30 s deadline.
    assert anyio.current_time() - start <= 0.05 + QUICK.max + 0.002
    text = str(info.value)
    for part in ("workbench session", "'s1'", "'failed'", "'running'", "Unknown resource profile"):
        assert part in text
    assert info.value.last.state == "failed"
    assert [s for s, _ in info.value.history] == ["launching", "failed"]


async def test_resumable_state_is_unreachable_unless_leaving(server: FakeServer) -> None:
    poller = make_poller(server)
    server.plan("s1", (0, "suspended"))
    with pytest.raises(UnreachableState, match="'suspended'"):
        await poller.wait("s1", "running", timeout=5)
    # Right after asking to resume, the server may still say "suspended" for a moment.
    server.plan("s2", (0, "suspended"), (0.05, "resuming"), (0.1, "running"))
    res = await poller.wait("s2", "running", timeout=5, leaving={"suspended"})
    assert res.state == "running"


async def test_failed_predicate_ends_wait_with_reason(server: FakeServer) -> None:
    def job_failed(res: Res) -> str | None:
        if res.state == "Finished" and res.exit_code:
            return f"exit code {res.exit_code}"
        return None

    poller = make_poller(server, WB_JOB, failed=job_failed)
    server.plan("j1", (0, "Pending"), (0.05, "Running"), (0.1, "Finished", {"exit_code": 3}))
    server.plan("j2", (0, "Pending"), (0.05, "Finished", {"exit_code": 0}))
    with pytest.raises(UnreachableState, match="exit code 3") as info:
        await poller.wait("j1", "Finished", timeout=5)
    assert info.value.last.exit_code == 3
    assert (await poller.wait("j2", "Finished", timeout=5)).exit_code == 0
    # A per-wait check adds to the poller's.
    server.plan("j3", (0, "Running", {"detail": "oom"}))
    with pytest.raises(
        UnreachableState,
        match=(
            r"failed: too much memory \(state 'Running', waiting for one of 'Failed', "
            r"'Finished'\); server says: oom"
        ),
    ):
        await poller.wait(
            "j3",
            {"Finished", "Failed"},
            timeout=5,
            failed=lambda r: "too much memory" if r.detail == "oom" else None,
        )


async def test_predicate_target_and_set_target(server: FakeServer) -> None:
    poller = make_poller(server, QISKIT_SESSION)
    server.plan(
        "q1",
        (0, "open", {"accepting": False}),
        (0.05, "active", {"accepting": False}),
        (0.1, "active", {"accepting": True}),
    )
    res = await poller.wait("q1", lambda r: r.state == "active" and r.accepting, timeout=5)
    assert res.accepting
    server.plan("q2", (0, "closed"))
    with pytest.raises(UnreachableState, match="the awaited condition"):
        await poller.wait("q2", lambda r: r.state == "active", timeout=5)
    server.plan("q3", (0, "pending_closed"), (0.05, "closed"))
    assert (await poller.wait("q3", {"closed", "inactive"}, timeout=5)).state == "closed"


async def test_normalized_states(server: FakeServer) -> None:
    poller = make_poller(server, ET_BATCH)
    server.plan("b1", (0, "SUBMITTED"), (0.05, "Running"), (0.1, "SUCCEEDED"))
    res = await poller.wait("b1", "Succeeded", timeout=5)
    assert res.state == "SUCCEEDED"  # the resource is returned as the server sent it


async def test_unknown_states_are_tolerated_and_recorded(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.plan("s1", (0, "launching"), (0.03, "warming_up"), (0.15, "running"))
    poller = make_poller(server)
    with caplog.at_level(logging.WARNING, logger="aiocompute.polling"):
        res = await poller.wait("s1", "running", timeout=5)
    assert res.state == "running"
    assert poller.stats.unknown_states["warming_up"] >= 2
    warnings = [r for r in caplog.records if "warming_up" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("timeout", [math.inf, -1, 0, float("nan")])
async def test_timeout_must_be_positive_and_finite(
    server: FakeServer,
    timeout: float,  # noqa: ASYNC109 (a parameter of the test, not a deadline)
) -> None:
    poller = make_poller(server)
    with pytest.raises(ValueError, match="deadline"):
        await poller.wait("s1", "running", timeout=timeout)


@pytest.mark.parametrize("timeout", [None, "5", True])
async def test_timeout_must_be_a_number(
    server: FakeServer,
    timeout: Any,  # noqa: ASYNC109 (a parameter of the test, not a deadline)
) -> None:
    poller = make_poller(server)
    with pytest.raises(TypeError, match="timeout"):
        await poller.wait("s1", "running", timeout=timeout)
    assert server.calls == []


async def test_bad_arguments_are_refused_clearly(server: FakeServer) -> None:
    poller = make_poller(server)
    with pytest.raises(ValueError, match=r"no state 'Runing'.*known: canceled.*'done'"):
        await poller.wait("s1", "Runing", timeout=5)
    with pytest.raises(TypeError, match="single string"):
        await poller.wait_all("s1", "running", timeout=5)
    with pytest.raises(ValueError, match="non-empty"):
        await poller.wait("", "running", timeout=5)
    with pytest.raises(ValueError, match="cancel_remote"):
        await poller.wait("s1", "running", timeout=5, on_cancel="cancel")
    with pytest.raises(ValueError, match="on_cancel"):
        await poller.wait("s1", "running", timeout=5, on_cancel="abort")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_batch"):
        make_poller(server, max_batch=0)
    assert server.calls == []


# ------------------------------------------------------------------------------ coalescing


async def test_many_waits_share_one_loop(server: FakeServer) -> None:
    ids = [f"s{i}" for i in range(100)]
    more = [f"w{i}" for i in range(50)]
    for one in ids + more:
        server.plan(one, (0, "launching"), (0.15, "running"))
    poller = make_poller(server)
    got: dict[str, Res] = {}
    batch: list[Res] = []

    async def one_wait(one: str) -> None:
        got[one] = await poller.wait(one, "running", timeout=5)

    async def all_wait() -> None:
        batch.extend(await poller.wait_all(more, "running", timeout=5))

    async with anyio.create_task_group() as tg:
        for one in ids:
            tg.start_soon(one_wait, one)
        tg.start_soon(all_wait)
    assert set(got) == set(ids)
    assert [r.id for r in batch] == more
    # One fetch_many per tick, each covering everybody: requests ~ ticks, not ids.
    assert len(server.calls) == poller.stats.ticks
    assert len(server.calls) <= 25
    assert len(server.calls[0][1]) == 150  # the first tick already covered every waiter
    assert_quiet(poller)


async def test_same_id_waited_twice_is_read_once_per_tick(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.1, "running"))
    poller = make_poller(server)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(lambda: poller.wait("s1", "running", timeout=5))
    assert all(ids == ["s1"] for _, ids in server.calls)


async def test_batches_respect_max_batch(server: FakeServer) -> None:
    ids = [f"s{i}" for i in range(35)]
    for one in ids:
        server.plan(one, (0, "launching"), (0.1, "running"))
    poller = make_poller(server, max_batch=10, batch_concurrency=2)
    res = await poller.wait_all(ids, "running", timeout=5)
    assert [r.id for r in res] == ids
    assert all(len(call) <= 10 for _, call in server.calls)
    assert len(server.calls) == 4 * poller.stats.ticks  # ceil(35 / 10) reads per tick
    assert server.max_concurrent <= 2
    assert_quiet(poller)


async def test_a_late_waiter_gets_a_fresh_read(server: FakeServer) -> None:
    slow = PollCadence(initial=0.5, max=2.0, jitter=0.0, fast=0.5, min_gap=0.005)
    server.plan("s1", (0, "running"))
    poller = make_poller(server, cadence=slow)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: poller.wait("s1", "ended", timeout=1))
        await anyio.sleep(0.05)  # the first waiter has read "running"; next read in 0.5 s
        server.plan("s1", (0, "ended"))
        start = anyio.current_time()
        res = await poller.wait("s1", "ended", timeout=1)
        assert anyio.current_time() - start < 0.05  # not at the first waiter's next read
        assert res.state == "ended"


async def test_interval_cap_shrinks_with_the_number_of_ids(server: FakeServer) -> None:
    cadence = PollCadence(initial=0.01, max=0.2, factor=2.0, jitter=0.0, fast=0.01, min_gap=0.001)
    ids = [f"s{i}" for i in range(100)]
    for one in [*ids, "x"]:
        server.plan(one, (0, "launching"), (0.25, "running"))
    poller = make_poller(server, cadence=cadence)
    single = make_poller(server, cadence=cadence)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: poller.wait_all(ids, "running", timeout=5))
        tg.start_soon(lambda: single.wait("x", "running", timeout=5))
    # sqrt(1/100) * 0.2 = 0.02: 100 waiters never back off past 20 ms, so lag stays small.
    assert max(poller.stats.intervals) <= 0.02 + 1e-9
    assert max(single.stats.intervals) > 0.1  # alone, it backs off further


# ------------------------------------------------------------------------------ cadence


async def test_backoff_grows_then_resets_on_transition(server: FakeServer) -> None:
    cadence = PollCadence(initial=0.01, max=0.08, factor=2.0, jitter=0.0, fast=0.01, min_gap=0.001)
    server.plan("s1", (0, "launching"), (0.25, "pending"), (0.45, "running"))
    poller = make_poller(server, cadence=cadence)
    await poller.wait("s1", "running", timeout=5)
    iv = [round(i, 6) for i in poller.stats.intervals]
    assert iv[:4] == [0.01, 0.02, 0.04, 0.08]
    assert 0.08 in iv[4:6]
    # After the move to "pending" the interval starts again at 0.01 and grows.
    after = iv.index(0.01, 4)
    assert iv[after : after + 4] == [0.01, 0.02, 0.04, 0.08]
    # The reads followed the plan: a quiet stretch is read rarely.
    quiet = [t for t, _ in server.calls if 0.1 <= t <= 0.25]
    assert len(quiet) <= 3


async def test_fast_states_are_polled_fast(server: FakeServer) -> None:
    cadence = PollCadence(initial=0.02, max=0.2, factor=2.0, jitter=0.0, fast=0.01, min_gap=0.001)
    server.plan("s1", (0, "starting"), (0.2, "running"))
    fast_poller = make_poller(server, cadence=cadence)
    await fast_poller.wait("s1", "running", timeout=5)
    # Every interval while in "starting" is the fast one (the last tick saw "running").
    assert {round(i, 6) for i in list(fast_poller.stats.intervals)[:-1]} == {0.01}
    reads_fast = len(server.calls)
    server.plan("s2", (0, "pending"), (0.2, "running"))  # the same 0.2 s, from now
    slow_poller = make_poller(server, cadence=cadence)
    await slow_poller.wait("s2", "running", timeout=5)
    reads_slow = len(server.calls) - reads_fast
    assert reads_fast >= 2 * reads_slow


async def test_jitter_spreads_intervals(server: FakeServer) -> None:
    import random

    cadence = PollCadence(initial=0.02, max=0.02, jitter=0.5, fast=0.02, min_gap=0.001)
    server.plan("s1", (0, "pending"), (0.15, "running"))
    poller = make_poller(server, cadence=cadence, rng=random.Random(7))
    await poller.wait("s1", "running", timeout=5)
    iv = list(poller.stats.intervals)
    assert all(0.01 - 1e-9 <= i <= 0.03 + 1e-9 for i in iv)
    assert len({round(i, 5) for i in iv}) > 3


@pytest.mark.parametrize("shared", [True, False])
async def test_a_change_anywhere_resets_shared_cadence(server: FakeServer, shared: bool) -> None:
    cadence = PollCadence(initial=0.01, max=0.08, factor=2.0, jitter=0.0, fast=0.01, min_gap=0.001)
    server.plan("a", (0, "pending"), (0.2, "running"))
    server.plan("b", (0, "pending"))
    poller = make_poller(server, cadence=cadence, top_up=shared)
    await poller.wait_all(["a", "b"], "running", timeout=0.35, return_exceptions=True)
    iv = [round(i, 6) for i in poller.stats.intervals]
    # Shared reads of 2 ids cap the backoff at max * sqrt(1 / 2); per-id reads at max.
    cap = round(0.08 * math.sqrt(0.5), 6) if shared else 0.08
    assert iv[:4] == [0.01, 0.02, 0.04, cap]
    after = iv.index(0.01, 1) + 1  # the tick that saw "a" move
    assert iv[after:]
    if shared:
        # One read covers both, so "b" is read fast again: activity tends to cluster.
        assert iv[after : after + 2] == [0.02, 0.04]
    else:
        # Every id costs a read: "b" keeps its own, backed-off interval.
        assert set(iv[after:]) == {0.08}


# ------------------------------------------------------------------------------ errors


async def test_retry_after_is_honoured(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (0.05, "running"))
    server.faults = [RateLimitError("slow down", status=429, retry_after=0.2)]
    poller = make_poller(server)
    res = await poller.wait("s1", "running", timeout=5)
    assert res.state == "running"
    first, second = server.calls[0][0], server.calls[1][0]
    assert 0.2 <= second - first <= 0.21  # not before Retry-After, and promptly after it
    assert poller.stats.retried_errors == 1


async def test_transient_errors_are_retried(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.plan("s1", (0, "launching"), (0.05, "running"))
    server.faults = [
        ServerError("bad gateway", status=502),
        TransportError("connection reset", retryable=True),
        RateLimitError("busy", status=429),
    ]
    poller = make_poller(server)
    with caplog.at_level(logging.DEBUG, logger="aiocompute.polling"):
        res = await poller.wait("s1", "running", timeout=5)
    assert res.state == "running"
    assert poller.stats.retried_errors == 3
    assert sum("will retry" in r.getMessage() for r in caplog.records) == 3


async def test_persistent_transient_errors_end_in_a_timeout_that_says_so(
    server: FakeServer,
) -> None:
    server.plan("s1", (0, "launching"))
    server.faults = [ServerError("down", status=503) for _ in range(1000)]
    poller = make_poller(server)
    with pytest.raises(WaitTimeout, match=r"failed, last: down") as info:
        await poller.wait("s1", "running", timeout=0.2)
    assert info.value.last is None
    assert info.value.attempts >= 2
    assert "no state read" in str(info.value)


async def test_an_unreadable_answer_is_read_again(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"), (1, "running"))
    server.plan("s2", (0, "launching"), (1, "running"))
    server.faults = [ProtocolError("HTML from a proxy", status=200)]
    poller = make_poller(server)
    got = await poller.wait_all(["s1", "s2"], "running", timeout=5)
    assert [s.id for s in got] == ["s1", "s2"]
    assert poller.stats.failed_fetches == 0
    assert_quiet(poller)


async def test_an_answer_unreadable_three_times_in_a_row_fails_its_waits(
    server: FakeServer,
) -> None:
    error = ProtocolError("HTML from a proxy", status=200)
    server.plan("s1", (0, "launching"))
    server.faults = [error] * 4
    poller = make_poller(server)
    with pytest.raises(ProtocolError):
        await poller.wait("s1", "running", timeout=60)
    assert len(server.calls) == 4  # the first and three more, then no more
    assert_quiet(poller)


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("Permission denied", status=401),
        NotFoundError("no such thing", status=404),
        TransportError("bad certificate", retryable=False),
        KeyError("bug in the API's decoder"),
    ],
)
async def test_non_retryable_errors_reach_every_waiter(
    server: FakeServer, error: Exception
) -> None:
    server.plan("s1", (0, "launching"))
    server.plan("s2", (0, "launching"))
    server.faults = [error]
    poller = make_poller(server)
    raised: list[BaseException] = []

    async def one(one_id: str) -> None:
        try:
            await poller.wait(one_id, "running", timeout=5)
        except Exception as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "s1")
        tg.start_soon(one, "s2")
    assert raised == [error, error]
    assert len(server.calls) == 1
    assert poller.stats.failed_fetches == 1
    assert_quiet(poller)


async def test_bad_state_of_becomes_protocol_error(server: FakeServer) -> None:
    server.plan("s1", (0, "launching"))
    poller = Poller(WB_SESSION, server.fetch_many, state_of=lambda r: r.missing_attr, cadence=QUICK)
    with pytest.raises(ProtocolError, match="could not read the state of workbench session 's1'"):
        await poller.wait("s1", "running", timeout=5)


# ------------------------------------------------------------------------------ missing ids


async def test_missing_ids_raise_not_found_after_n_reads(server: FakeServer) -> None:
    poller = make_poller(server, missing_after=3)
    with pytest.raises(NotFoundError, match="'ghost' was not found \\(3 reads in a row\\)"):
        await poller.wait("ghost", "running", timeout=5)
    assert len(server.calls) == 3


async def test_briefly_missing_ids_are_tolerated(server: FakeServer) -> None:
    poller = make_poller(server, missing_after=3)
    got: list[Res] = []

    async def waiter() -> None:
        got.append(await poller.wait("late", "running", timeout=5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.02)  # not visible for a read or two: eventual consistency
        server.plan("late", (0, "launching"), (0.02, "running"))
    assert got == [Res("late", "running")]
    # Two reads (at 0 and 10 ms) missed it: one short of missing_after.
    assert len([t for t, _ in server.calls if t < 0.02]) == 2


async def test_on_missing_maps_vanished_resources(server: FakeServer) -> None:
    asked: list[list[str]] = []

    async def from_history(ids: Sequence[str]) -> Mapping[str, Res]:
        asked.append(list(ids))
        return {one: Res(one, "ended") for one in ids if one.startswith("gone")}

    poller = make_poller(server, on_missing=from_history, missing_after=2)
    server.plan("gone1", (0, "running"), (0.05, "quitting"))
    server.plans["gone1"].append((server.now() + 0.1, None))  # type: ignore[arg-type]
    res = await poller.wait("gone1", "ended", timeout=5)
    assert res == Res("gone1", "ended")
    assert asked
    assert all(ids == ["gone1"] for ids in asked)
    server.plan("gone2", (0, "running"))
    server.plans["gone2"].append((server.now() + 0.05, None))  # type: ignore[arg-type]
    with pytest.raises(UnreachableState, match="'ended'"):
        await poller.wait("gone2", "suspended", timeout=5)
    with pytest.raises(NotFoundError):
        await poller.wait("never", "running", timeout=5)


# ------------------------------------------------------------------------------ cancellation


class Canceller:
    def __init__(self, delay: float = 0.05, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.completed: list[str] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, id: str) -> None:
        self.calls.append(id)
        await anyio.sleep(self.delay)  # only finishes if shielded from the cancellation
        if self.fail:
            raise ServerError("cannot cancel", status=500)
        self.completed.append(id)


async def test_detach_does_not_cancel_remotely(server: FakeServer) -> None:
    server.plan("s1", (0, "pending"))
    cancel = Canceller()
    poller = make_poller(server, cancel_remote=cancel)
    with pytest.raises(WaitTimeout):
        await poller.wait("s1", "running", timeout=0.1)
    with anyio.move_on_after(0.1):
        await poller.wait("s1", "running", timeout=5)
    assert cancel.calls == []


async def test_cancel_policy_on_timeout_calls_cancel_remote_once(server: FakeServer) -> None:
    server.plan("s1", (0, "pending"))
    cancel = Canceller()
    poller = make_poller(server, cancel_remote=cancel)
    with pytest.raises(WaitTimeout, match="cancel requested"):
        await poller.wait("s1", "running", timeout=0.1, on_cancel="cancel")
    assert cancel.calls == ["s1"]
    assert cancel.completed == ["s1"]
    assert_quiet(poller)


async def test_cancel_policy_when_the_task_is_cancelled(server: FakeServer) -> None:
    server.plan("s1", (0, "pending"))
    cancel = Canceller(delay=0.05)
    poller = make_poller(server, cancel_remote=cancel)
    with anyio.move_on_after(0.1) as scope:
        await poller.wait("s1", "running", timeout=5, on_cancel="cancel")
    assert scope.cancelled_caught
    assert cancel.calls == ["s1"]
    assert cancel.completed == ["s1"]  # shielded: it ran to the end despite the cancellation
    assert_quiet(poller)


async def test_cancel_policy_for_wait_all_cancels_only_pending(server: FakeServer) -> None:
    server.plan("done", (0, "running"))
    server.plan("p1", (0, "pending"))
    server.plan("p2", (0, "pending"))
    cancel = Canceller(fail=True)
    poller = make_poller(server, cancel_remote=cancel)
    results = await poller.wait_all(
        ["p1", "done", "p2"], "running", timeout=0.1, on_cancel="cancel", return_exceptions=True
    )
    assert sorted(cancel.calls) == ["p1", "p2"]
    assert isinstance(results[0], WaitTimeout)
    assert "cancel failed: cannot cancel" in str(results[0])
    assert results[1] == Res("done", "running")
    assert isinstance(results[2], WaitTimeout)


async def test_cancel_remote_has_its_own_deadline(server: FakeServer) -> None:
    server.plan("s1", (0, "pending"))
    cancel = Canceller(delay=5)
    poller = make_poller(server, cancel_remote=cancel, cancel_timeout=0.05)
    start = anyio.current_time()
    with pytest.raises(WaitTimeout, match="cancel failed: cancel did not finish in time"):
        await poller.wait("s1", "running", timeout=0.05, on_cancel="cancel")
    # The wait's 0.05 s, then the cancel's 0.05 s: not the cancel's 5 s.
    assert 0.1 <= anyio.current_time() - start <= 0.11
    assert cancel.calls == ["s1"]


async def test_a_cancelled_driver_hands_the_loop_over(server: FakeServer) -> None:
    server.plan("a", (0, "pending"))
    server.plan("b", (0, "pending"), (0.2, "running"))
    poller = make_poller(server)
    got: list[Res] = []

    async def waiter_b() -> None:
        got.append(await poller.wait("b", "running", timeout=2))

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(0.05):
            tg.start_soon(waiter_b)
            await poller.wait("a", "running", timeout=2)  # drives first, then is cancelled
    assert got == [Res("b", "running")]
    assert_quiet(poller)


# ------------------------------------------------------------------------------ wait_all


async def test_wait_all_results_in_input_order_with_exceptions(server: FakeServer) -> None:
    server.plan("ok", (0, "launching"), (0.1, "running"))
    server.plan("bad", (0, "launching"), (0.02, "killed"))
    server.plan("slow", (0, "pending"))
    poller = make_poller(server)
    results = await poller.wait_all(
        ["slow", "ok", "bad", "ok"], "running", timeout=0.2, return_exceptions=True
    )
    assert isinstance(results[0], WaitTimeout)
    assert results[1] == results[3] == Res("ok", "running")
    assert isinstance(results[2], UnreachableState)
    assert await poller.wait_all([], "running", timeout=1) == []


async def test_wait_all_raises_first_failure_and_merges_timeouts(server: FakeServer) -> None:
    server.plan("bad", (0, "launching"), (0.02, "killed"))
    server.plan("p1", (0, "pending"))
    server.plan("p2", (0, "pending"))
    poller = make_poller(server)
    start = anyio.current_time()
    with pytest.raises(UnreachableState, match="'bad'"):
        await poller.wait_all(["p1", "bad"], "running", timeout=5)
    assert anyio.current_time() - start < 0.5
    with pytest.raises(
        WaitTimeout, match=r"2 of 2 workbench session waits timed out \('p1', 'p2'\)"
    ):
        await poller.wait_all(["p1", "p2"], "running", timeout=0.1)
    assert_quiet(poller)


# ------------------------------------------------------------------------------ as_completed


async def test_as_completed_yields_in_completion_order(server: FakeServer) -> None:
    server.plan("a", (0, "launching"), (0.2, "running"))
    server.plan("b", (0, "launching"), (0.05, "running"))
    server.plan("c", (0, "launching"), (0.15, "running"))
    server.plan("d", (0, "launching"), (0.1, "failed", {"detail": "no capacity"}))
    server.plan("e", (0, "pending"))
    poller = make_poller(server)
    seen: list[WaitResult[Res]] = [
        r async for r in poller.as_completed(["a", "b", "c", "d", "e"], "running", timeout=0.3)
    ]
    assert [r.id for r in seen] == ["b", "d", "c", "a", "e"]
    assert seen[0].ok
    assert seen[0].unwrap() == Res("b", "running")
    assert isinstance(seen[1].error, UnreachableState)
    assert "no capacity" in str(seen[1].error)
    assert isinstance(seen[4].error, WaitTimeout)
    assert seen[4].resource == Res("e", "pending")
    with pytest.raises(WaitTimeout):
        seen[4].unwrap()
    assert_quiet(poller)


async def test_as_completed_left_early_detaches(server: FakeServer) -> None:
    server.plan("a", (0, "running"))
    server.plan("b", (0, "pending"))
    poller = make_poller(server)
    results = poller.as_completed(["a", "b"], "running", timeout=5)
    async for result in results:
        assert result.id == "a"
        break
    await results.aclose()  # type: ignore[attr-defined]
    assert_quiet(poller)


# ------------------------------------------------------------------------------ watch


async def test_watch_yields_every_transition_in_order(server: FakeServer) -> None:
    server.plan("j1", (0, "Pending"), (0.05, "Running"), (0.1, "Finished"))
    server.plan("j2", (0, "Pending"), (0.15, "Failed"))
    poller = make_poller(server, WB_JOB)
    events = [e async for e in poller.watch(["j1", "j2"], timeout=5)]
    by_id = {
        one: [(e.old_state, e.new_state) for e in events if e.id == one] for one in ("j1", "j2")
    }
    assert by_id["j1"] == [(None, "Pending"), ("Pending", "Running"), ("Running", "Finished")]
    assert by_id["j2"] == [(None, "Pending"), ("Pending", "Failed")]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[-1].new_state == "Failed"
    assert_quiet(poller)


async def test_watch_times_out_and_reports_errors(server: FakeServer) -> None:
    server.plan("j1", (0, "Running"))
    poller = make_poller(server, WB_JOB, missing_after=1)
    events: list[TransitionEvent[Res]] = []

    async def collect() -> None:
        async for event in poller.watch(["j1"], timeout=0.1):
            events.append(event)

    with pytest.raises(WaitTimeout, match="a settled state"):
        await collect()
    assert [e.new_state for e in events] == ["Running"]
    with pytest.raises(NotFoundError):
        await collect_all(poller.watch(["nope"], timeout=1))


# ------------------------------------------------------------------------------ tokens


async def test_token_round_trip_and_resume(server: FakeServer) -> None:
    poller = make_poller(server, kind="workbench.session")
    token = poller.token(["s1", "s2", "s1"], "running", timeout=30)
    text = token.to_json()
    assert json.loads(text)["ids"] == ["s1", "s2"]
    again = WaitToken.from_json(text)
    assert again == token
    assert 29 < again.remaining() <= 30
    server.plan("s1", (0, "launching"), (0.05, "running"))
    server.plan("s2", (0, "running"))
    other = make_poller(server, kind="workbench.session")  # e.g. after a restart
    assert [r.id for r in await other.resume(again)] == ["s1", "s2"]


async def test_resume_checks_kind_states_and_deadline(server: FakeServer) -> None:
    poller = make_poller(server, kind="workbench.session")
    with pytest.raises(ValueError, match=r"is for 'qiskit\.session'"):
        await poller.resume(WaitToken("qiskit.session", ("s1",), ("running",), time.time() + 9))
    with pytest.raises(ValueError, match="no state 'open'"):
        await poller.resume(WaitToken("workbench.session", ("s1",), ("open",), time.time() + 9))
    with pytest.raises(WaitTimeout, match=r"passed 5\.0 s before it was resumed"):
        await poller.resume(WaitToken("workbench.session", ("s1",), ("running",), time.time() - 5))
    with pytest.raises(TypeError, match="predicate"):
        poller.token(["s1"], lambda r: True, timeout=5)  # type: ignore[arg-type]
    assert server.calls == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"v": 2, "kind": "k", "ids": ["a"], "until": ["x"], "deadline": 1}', "version 2"),
        ('{"v": 1, "kind": "", "ids": ["a"], "until": ["x"], "deadline": 1}', "'kind'"),
        ('{"v": 1, "kind": "k", "ids": [], "until": ["x"], "deadline": 1}', "'ids'"),
        ('{"v": 1, "kind": "k", "ids": ["a", 3], "until": ["x"], "deadline": 1}', "'ids'"),
        ('{"v": 1, "kind": "k", "ids": ["a"], "until": "x", "deadline": 1}', "'until'"),
        ('{"v": 1, "kind": "k", "ids": ["a"], "until": ["x"], "deadline": "1"}', "'deadline'"),
        ('{"v": 1, "kind": "k", "ids": ["a"], "until": ["x"], "deadline": true}', "'deadline'"),
        ('{"v": 1, "kind": "k", "ids": ["a"], "until": ["x"]}', "'deadline'"),
    ],
)
def test_bad_tokens_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid wait token") as info:
        WaitToken.from_json(text)
    assert message in str(info.value)


# ------------------------------------------------------------------------------ per-id reads


async def test_per_id_fetcher_caps_concurrency_and_skips_not_found(server: FakeServer) -> None:
    fetch = per_id_fetcher(server.fetch_one, concurrency=3)
    for i in range(10):
        server.plan(f"s{i}", (0, "running"))
    got = await fetch([f"s{i}" for i in range(10)] + ["ghost"])
    assert sorted(got) == sorted(f"s{i}" for i in range(10))
    assert server.max_concurrent == 3
    with pytest.raises(ValueError, match="concurrency"):
        per_id_fetcher(server.fetch_one, concurrency=0)


async def test_per_id_fetcher_prefers_non_retryable_errors() -> None:
    async def fetch_one(id: str) -> Res:
        await anyio.sleep(0.01 if id == "auth" else 0)
        if id == "auth":
            raise AuthenticationError("denied", status=403)
        raise ServerError("flaky", status=503)

    with pytest.raises(AuthenticationError):
        await per_id_fetcher(fetch_one, 4)(["x", "auth", "y"])


async def test_per_id_poller_reads_only_due_ids(server: FakeServer) -> None:
    cadence = PollCadence(initial=0.01, max=0.08, factor=2.0, jitter=0.0, fast=0.01, min_gap=0.001)
    reads: list[str] = []

    async def fetch_one(id: str) -> Res:
        reads.append(id)
        res = server.read(id)
        assert res is not None
        return res

    fetch = per_id_fetcher(fetch_one, concurrency=4)
    assert isinstance(fetch, PerIdFetcher)
    server.plan("quick", (0, "starting"), (0.2, "running"))  # fast state: read every 10 ms
    server.plan("quiet", (0, "pending"), (0.2, "running"))  # backs off to 80 ms
    poller = Poller(WB_SESSION, fetch, state_of=lambda r: r.state, cadence=cadence)
    assert poller.top_up is False
    await poller.wait_all(["quick", "quiet"], "running", timeout=5)
    assert reads.count("quick") >= 3 * reads.count("quiet")


# ------------------------------------------------------------------------------ lifetime


async def test_close_ends_waits_and_refuses_new_ones(server: FakeServer) -> None:
    server.plan("s1", (0, "pending"))
    server.plan("s2", (0, "pending"))
    poller = make_poller(server)
    raised: list[BaseException] = []

    async def one(one_id: str) -> None:
        try:
            await poller.wait(one_id, "running", timeout=5)
        except ClientClosedError as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "s1")
        tg.start_soon(one, "s2")
        await anyio.sleep(0.05)
        async with poller:  # leaving the block closes it
            pass
    assert len(raised) == 2
    assert poller.closed
    with pytest.raises(ClientClosedError, match="poller is closed"):
        await poller.wait("s1", "running", timeout=1)
    assert_quiet(poller)


async def test_no_tasks_survive_waits(server: FakeServer) -> None:
    for i in range(20):
        server.plan(f"s{i}", (0, "launching"), (0.02 * (i % 5), "running"))
    poller = make_poller(server, max_batch=7)
    before = set(asyncio.all_tasks())
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lambda one=f"s{i}": poller.wait(one, "running", timeout=5))
    assert set(asyncio.all_tasks()) == before
    assert_quiet(poller)
    # The poller is reusable after going quiet: the next wait simply drives it again.
    assert (await poller.wait("s3", "running", timeout=5)).state == "running"


# -- light polls and settled (full) reads ------------------------------------------------------


class LightAndFull:
    """Light polls (state only, as a ``fields`` list would give) and a recording full read."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.settle_calls: list[list[str]] = []
        self.settle_faults: list[BaseException] = []
        self.drop: set[str] = set()

    async def light(self, ids: Sequence[str]) -> Mapping[str, Res]:
        got = await self.server.fetch_many(ids)
        return {one: Res(one, res.state) for one, res in got.items()}

    async def full(self, ids: Sequence[str]) -> Mapping[str, Res]:
        self.settle_calls.append(list(ids))
        await anyio.sleep(0.001)
        if self.settle_faults:
            raise self.settle_faults.pop(0)
        found = {one: self.server.read(one) for one in ids if one not in self.drop}
        return {one: res for one, res in found.items() if res is not None}

    def poller(self, **kwargs: Any) -> Poller[Res]:
        kwargs.setdefault("cadence", QUICK)
        return Poller(
            WB_SESSION, self.light, state_of=lambda r: r.state, settle=self.full, **kwargs
        )


async def test_settle_returns_the_full_resource(server: FakeServer) -> None:
    server.plan("s1", (0, "launching", {"detail": "queued"}), (0.1, "running", {"detail": "up"}))
    io = LightAndFull(server)
    poller = io.poller()
    res = await poller.wait("s1", "running", timeout=5)
    assert res == Res("s1", "running", detail="up")
    # Polls stayed light; only the read that reached the target was read in full.
    assert io.settle_calls == [["s1"]]
    assert len(server.calls) >= 3
    assert poller.stats.settle_calls == 1
    assert poller.stats.ids_settled == 1
    assert_quiet(poller)


async def test_one_settle_call_per_tick_for_many_finishing_ids(server: FakeServer) -> None:
    ids = [f"s{i}" for i in range(60)]
    for one in ids:
        server.plan(one, (0, "launching"), (0.1, "running", {"detail": f"at {one}"}))
    io = LightAndFull(server)
    poller = io.poller()
    got = await poller.wait_all(ids, "running", timeout=5)
    assert [r.detail for r in got] == [f"at {one}" for one in ids]
    assert len(io.settle_calls) == 1
    assert sorted(io.settle_calls[0]) == sorted(ids)
    # With max_batch the full reads are batched like the polls.
    io.settle_calls.clear()
    server.plans.clear()
    for one in ids:
        server.plan(one, (0, "launching"), (0.1, "running", {"detail": "x"}))
    batched = io.poller(max_batch=25)
    await batched.wait_all(ids, "running", timeout=5)
    assert sorted(len(call) for call in io.settle_calls) == [10, 25, 25]
    assert_quiet(batched)


async def test_a_failed_or_partial_settle_falls_back_to_the_light_read(
    server: FakeServer,
) -> None:
    server.plan("s1", (0, "running", {"detail": "full"}))
    server.plan("s2", (0, "running", {"detail": "full"}))
    io = LightAndFull(server)
    poller = io.poller()
    io.settle_faults.append(AuthenticationError("no", status=401))
    assert await poller.wait("s1", "running", timeout=5) == Res("s1", "running")
    io.settle_faults.append(TransportError("reset", retryable=True))
    assert await poller.wait("s1", "running", timeout=5) == Res("s1", "running")
    assert poller.stats.settle_errors == 2
    io.drop.add("s2")  # the full read lacks it: keep the light one
    got = await poller.wait_all(["s1", "s2"], "running", timeout=5)
    assert got == [Res("s1", "running", detail="full"), Res("s2", "running")]
    assert_quiet(poller)


async def test_settled_state_decides_the_wait(server: FakeServer) -> None:
    # The light read says running; by the full read the session has already failed.
    server.plan("s1", (0, "launching"), (0.1, "running"))
    io = LightAndFull(server)

    async def moved_on(ids: Sequence[str]) -> Mapping[str, Res]:
        await io.full(ids)
        return {one: Res(one, "failed", detail="oom") for one in ids}

    poller = Poller(
        WB_SESSION,
        io.light,
        state_of=lambda r: r.state,
        detail_of=lambda r: r.detail,
        settle=moved_on,
        cadence=QUICK,
    )
    with pytest.raises(UnreachableState) as info:
        await poller.wait("s1", "running", timeout=5)
    assert info.value.last == Res("s1", "failed", detail="oom")
    assert "oom" in str(info.value)


async def test_no_settle_for_unreachable_timeout_or_watch(server: FakeServer) -> None:
    server.plan("bad", (0, "launching"), (0.05, "failed", {"detail": "oom"}))
    server.plan("slow", (0, "launching", {"detail": "queued"}))
    io = LightAndFull(server)
    poller = io.poller()
    with pytest.raises(UnreachableState) as unreachable:
        await poller.wait("bad", "running", timeout=5)
    assert unreachable.value.last == Res("bad", "failed")  # the light read
    with pytest.raises(WaitTimeout) as timeout:
        await poller.wait("slow", "running", timeout=0.5)
    assert timeout.value.last == Res("slow", "launching")
    server.plan("w", (0, "launching"), (0.05, "running", {"detail": "up"}))
    events = await collect_all(poller.watch(["w"], timeout=5, until="running"))
    assert [e.new_state for e in events] == ["launching", "running"]
    assert events[-1].resource == Res("w", "running")  # watch events are light
    assert io.settle_calls == []
    assert_quiet(poller)


async def test_deciding_code_sees_full_reads_hooks_see_light_ones(server: FakeServer) -> None:
    server.plan("s1", (0, "launching", {"detail": "queued"}), (0.1, "running", {"detail": "up"}))
    io = LightAndFull(server)
    poller = io.poller()
    # A predicate may look at any field: its reads are all full.
    res = await poller.wait("s1", lambda r: r.detail == "up", timeout=5)
    assert res.detail == "up"
    server.plan("s2", (0, "launching", {"detail": "queued"}), (0.1, "running", {"detail": "up"}))
    seen: list[str | None] = []
    res = await poller.wait("s2", "running", timeout=5, failed=lambda r: seen.append(r.detail))
    assert res.detail == "up"
    assert seen[0] == "queued"  # not None: the wait's own check got full reads
    # Hooks only observe: light reads, except the one that ends the wait.
    server.plan("s3", (0, "launching", {"detail": "queued"}), (0.1, "running", {"detail": "up"}))
    polls: list[PollEvent[Res]] = []
    changes: list[TransitionEvent[Res]] = []
    before = len(io.settle_calls)
    await poller.wait(
        "s3", "running", timeout=5, on_poll=polls.append, on_transition=changes.append
    )
    assert [(c.new_state, c.resource.detail) for c in changes] == [
        ("launching", None),
        ("running", "up"),
    ]
    assert len(polls) >= 3
    assert all(p.resource.detail is None for p in polls[:-1])
    assert polls[-1].resource.detail == "up"
    assert len(io.settle_calls) - before == 1
    assert_quiet(poller)
